//! The exit-code contract: the same for every subcommand, and repeated in the README.
//!
//! clap exits with [`USAGE`] on its own for a malformed command line, which is why the
//! usage code is 2.

/// Everything that was asked for happened and every check passed.
pub(crate) const SUCCESS: u8 = 0;
/// A check failed: an expectation, an echo mismatch, a load threshold, an abnormal close.
pub const CHECK_FAILED: u8 = 1;
/// The command line, a script's syntax or an input file is wrong; nothing was sent.
pub(crate) const USAGE: u8 = 2;
/// A connection could not be opened: DNS, refused, timeout, TLS, or a rejected handshake.
pub(crate) const CONNECT_FAILED: u8 = 3;
/// Interrupted by Ctrl-C, after printing what was measured.
pub(crate) const INTERRUPTED: u8 = 130;
