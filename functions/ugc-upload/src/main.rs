//! Entry point of the `ugcUpload` function.

fn main() {}
