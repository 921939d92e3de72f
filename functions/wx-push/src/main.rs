//! Entry point of the `wxPush` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(wx_push::function())
}
