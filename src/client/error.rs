//! Every way opening a connection can fail, in words a user understands.

use std::time::Duration;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is malformed or not ws:// / wss://.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The host name did not resolve.
    #[error("could not resolve host `{host}`: {reason}")]
    Dns { host: String, reason: String },
    /// Nothing listens on the port.
    #[error("connection refused by {addr}")]
    Refused { addr: String },
    /// TCP, TLS or the handshake took longer than the connect timeout.
    #[error("timed out after {} connecting to {url}", humantime::format_duration(*after))]
    Timeout { url: String, after: Duration },
    /// The TLS handshake failed; `reason` says why in plain words.
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    /// The server answered the upgrade with an HTTP status other than 101.
    #[error("handshake rejected: {status} {reason}{}", if body.is_empty() { String::new() } else { format!(" {body}") })]
    Rejected {
        status: u16,
        reason: String,
        body: String,
    },
    /// Any other failure on the way (I/O, protocol).
    #[error("could not connect to {url}: {reason}")]
    Other { url: String, reason: String },
}

impl ConnectError {
    /// A hint for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Rejected { status: 401, .. } => Some(
                "the server wants credentials: pass --auth 'Bearer TOKEN' (or WSPROBE_AUTH)".into(),
            ),
            Self::Rejected { status: 403, .. } => Some(
                "check the API key (--api-key or WSPROBE_API_KEY) and the stage in the URL".into(),
            ),
            Self::Refused { .. } => Some("is the server running, and is the port right?".into()),
            _ => None,
        }
    }
}
