//! Entry point of the `wxPush` function.

fn main() {}
