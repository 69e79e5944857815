//! The error type that jobs return to `main`, and what each job reports when it finishes.
//! `error_reporting` is the one place that turns these into messages and exit codes.

use wsprobe_core::client::ConnectError;
use wsprobe_core::command::SyntaxErrors;
use wsprobe_core::options::ConfigError;

/// How a job that ran to its end came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed.
    Success,
    /// The job ran, and a check failed (already reported by the job).
    ChecksFailed,
    /// Ctrl-C: the job stopped early and printed what it had.
    Interrupted,
}

/// Why a job could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or an input is wrong (exit 2). The message says how.
    #[error("{0}")]
    Usage(String),
    /// A script has syntax errors (exit 2); `rendered` holds every error, rustc-style,
    /// already formatted for the terminal.
    #[error("{rendered}")]
    Syntax { rendered: String },
    /// A connection could not be opened (exit 3).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Anything else that stopped the job (exit 1).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }
}

impl From<ConfigError> for Error {
    /// A configuration that cannot work is the user's to fix: a usage error.
    fn from(error: ConfigError) -> Self {
        Self::Usage(error.0)
    }
}

impl From<SyntaxErrors> for Error {
    fn from(errors: SyntaxErrors) -> Self {
        Self::Syntax {
            rendered: errors.render(colored::control::SHOULD_COLORIZE.should_colorize()),
        }
    }
}
