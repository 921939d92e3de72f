//! The `gatedContent` function: builds its handler from the `wemint` library.
//!
//! Until its business logic lands it answers only what the runtime provides itself: the
//! `health` action (name, version, run mode).

use wemint::runtime::Function;

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "gatedContent";

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<()> {
    Function::new(NAME, env!("CARGO_PKG_VERSION"))
}
