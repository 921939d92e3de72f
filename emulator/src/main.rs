//! `wemint-dev`: the local suite.

fn main() {}
