//! Entry point of the `createOrder` function.

fn main() {}
