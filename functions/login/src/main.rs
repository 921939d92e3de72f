//! Entry point of the `login` function.

fn main() {}
