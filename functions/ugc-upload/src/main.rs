//! Entry point of the `ugcUpload` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(ugc_upload::function())
}
