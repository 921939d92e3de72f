//! Entry point of the `createOrder` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(create_order::function())
}
