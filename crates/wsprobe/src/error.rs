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
    /// A connection opened with these credentials could not be opened (exit 3): the
    /// hints after a 401 or 403 take account of what was given.
    #[error("{error}")]
    ConnectWith {
        /// What went wrong.
        error: ConnectError,
        /// The credentials the connection was opened with.
        given: Credentials,
    },
    /// Anything else that stopped the job (exit 1).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Which credentials a connection carried: what a 401 or 403 hint need not suggest again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// An `Authorization` header (`--auth`, `-H`, a profile, WSPROBE_AUTH).
    pub auth: bool,
    /// An `x-api-key` header (`--api-key`, `-H`, a profile, WSPROBE_API_KEY).
    pub api_key: bool,
    /// A SigV4 signature (`--sigv4`, `--sigv4-query`).
    pub sigv4: bool,
}

impl Credentials {
    /// The credentials of connections opened with `options`.
    pub(crate) fn of(options: &wsprobe_core::options::ConnectOptions) -> Self {
        Self::from_parts(
            &options.headers,
            options.auth.is_some(),
            options.api_key.is_some(),
            options.signing.is_some(),
        )
    }

    /// The credentials of a connection opened with `config` (a script's `connect` may add
    /// its own `auth`, `api-key` and headers to the command line's).
    pub(crate) fn of_client(config: &wsprobe_core::client::ClientConfig) -> Self {
        Self::from_parts(
            &config.headers,
            config.auth.is_some(),
            config.api_key.is_some(),
            config.signer.is_some(),
        )
    }

    fn from_parts(
        headers: &[wsprobe_core::values::Header],
        auth: bool,
        api_key: bool,
        sigv4: bool,
    ) -> Self {
        let header = |name: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
        Self {
            auth: auth || header("authorization"),
            api_key: api_key || header("x-api-key"),
            sigv4,
        }
    }
}

impl Error {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// This error, knowing the credentials its connection was opened with.
    pub(crate) fn given(self, given: Credentials) -> Self {
        match self {
            Self::Connect(error) => Self::ConnectWith { error, given },
            other => other,
        }
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
