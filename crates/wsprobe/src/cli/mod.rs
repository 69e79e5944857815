//! The command line: the flags (`args.rs`), stage profiles (`profile.rs`), and the one
//! lowering of both into the core's types (`lower.rs`).

mod args;
pub mod lower;
pub mod profile;

pub use args::*;
