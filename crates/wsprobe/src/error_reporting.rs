//! The only place that inspects errors to choose an exit code and to add hints.

use std::io::Write;

use colored::Colorize;

use crate::error::{Error, Outcome};
use crate::exit;
use wsprobe_core::client::ConnectError;

/// The exit code of a finished job.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => exit::SUCCESS,
        Outcome::ChecksFailed => exit::CHECK_FAILED,
        Outcome::Interrupted => exit::INTERRUPTED,
    }
}

/// Prints `error` to stderr (with a hint where one helps) and returns its exit code.
pub fn report(error: &Error) -> u8 {
    let mut stderr = std::io::stderr().lock();
    let code = match error {
        Error::Syntax { rendered } => {
            // Already rendered with its own `error:` headings and carets.
            let _ = write!(stderr, "{rendered}");
            if !rendered.ends_with('\n') {
                let _ = writeln!(stderr);
            }
            return exit::USAGE;
        }
        Error::Usage(_) => exit::USAGE,
        Error::Connect(ConnectError::InvalidUrl { .. }) => exit::USAGE,
        Error::Connect(_) => exit::CONNECT_FAILED,
        Error::Other(_) => exit::CHECK_FAILED,
    };
    let _ = writeln!(stderr, "{} {}", "error:".red().bold(), message_of(error));
    if let Some(hint) = hint(error) {
        let _ = writeln!(stderr, "{} {hint}", "hint:".cyan().bold());
    }
    code
}

fn message_of(error: &Error) -> String {
    match error {
        // `{:#}` prints anyhow's context chain on one line.
        Error::Other(inner) => format!("{inner:#}"),
        other => other.to_string(),
    }
}

fn hint(error: &Error) -> Option<String> {
    let Error::Connect(connect) = error else {
        return None;
    };
    connect.hint()
}
