//! Entry point of the `payNotify` function.

fn main() {}
