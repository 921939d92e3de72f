//! Entry point of the `payNotify` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(pay_notify::function())
}
