//! Entry point of the `reconcile` function: scf-event, http or lambda mode, chosen at start.

fn main() -> std::process::ExitCode {
    wemint::runtime::run(reconcile::function())
}
