//! Network benchmark: see the README performance section.

fn main() {}
