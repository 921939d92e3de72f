//! Entry point of the `gatedContent` function.

fn main() {}
