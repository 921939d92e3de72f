//! Entry point of the `gatedContent` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(gated_content::function())
}
