//! Entry point of the `analytics` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(analytics::function())
}
