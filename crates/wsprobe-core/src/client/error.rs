//! Every way opening a connection can fail, in words a user understands.
//!
//! No variant carries a header value, so a token or API key can never reach an error
//! message; URLs are shown without their password.

use crate::text::one_line;
use std::time::Duration;

use tokio_tungstenite::tungstenite::http::HeaderMap;

/// What went wrong in a TLS handshake, for hints and for counting failures by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// The certificate chain ends in a CA we do not trust (self-signed, private CA).
    UnknownIssuer,
    /// The certificate has expired or is not valid yet.
    Expired,
    /// The certificate is for another host name.
    NameMismatch,
    /// The server does not speak TLS on this port (a plain `ws://` endpoint?).
    NotTls,
    /// The server wants a client certificate, or refused ours.
    ClientCertificate,
    /// Anything else: revoked, bad signature, no common protocol, …
    Other,
}

/// Why a connection could not be opened. What came from the network (a rejection's body, a
/// proxy's answer, a certificate's names) is kept as it came and escaped when displayed
/// ([`crate::text`]).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is malformed or not ws:// / wss:// (a usage error: exit 2).
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it, with a suggestion where one helps.
        reason: String,
    },
    /// The host name did not resolve.
    #[error("could not resolve host `{host}`: {reason}")]
    Dns {
        /// The name that did not resolve.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Nothing listens on the port (every address refused the TCP connection).
    #[error("connection refused by {addr}")]
    Refused {
        /// `host:port` as in the URL.
        addr: String,
    },
    /// DNS, TCP, TLS and the handshake together took longer than the connect timeout.
    #[error("timed out after {} connecting to {url}", humantime::format_duration(*after))]
    Timeout {
        /// The URL being opened.
        url: String,
        /// The connect timeout that ran out.
        after: Duration,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {host} failed: {}", one_line(reason))]
    Tls {
        /// The host name (or address) the certificate was checked against.
        host: String,
        /// Why, in plain words.
        reason: String,
        /// The kind of problem, for hints and counting.
        problem: TlsProblem,
    },
    /// The server answered the upgrade with an HTTP status other than 101.
    #[error("handshake rejected: {status} {}{}", one_line(reason), if body.is_empty() { String::new() } else { format!(" {}", one_line(body)) })]
    Rejected {
        /// The HTTP status, e.g. 401 or 403.
        status: u16,
        /// The status's reason phrase, e.g. `Forbidden` (empty for unknown codes).
        reason: String,
        /// The response body as text (lossy UTF-8), trimmed, cut at 2 KiB.
        body: String,
        /// The response headers (e.g. API Gateway's `x-amzn-ErrorType`,
        /// `x-amzn-RequestId`).
        headers: Box<HeaderMap>,
    },
    /// The HTTP proxy (from `https_proxy`, `http_proxy` or `all_proxy`) did not open a
    /// tunnel to the server.
    #[error("proxy {proxy} failed: {}", one_line(reason))]
    Proxy {
        /// `host:port` of the proxy.
        proxy: String,
        /// What it answered, or what went wrong.
        reason: String,
    },
    /// Any other failure on the way: TCP errors other than a refusal, a server that hangs
    /// up during the handshake, an answer that is not a WebSocket handshake, a subprotocol
    /// that was not offered.
    #[error("could not connect to {url}: {}", one_line(reason))]
    Other {
        /// The URL (or `host:port`) being opened.
        url: String,
        /// What happened.
        reason: String,
    },
}

impl ConnectError {
    /// A hint for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Rejected { status: 401, .. } => Some(
                "the server wants credentials: pass --auth 'Bearer TOKEN' (or WSPROBE_AUTH)".into(),
            ),
            Self::Rejected { status: 403, .. } => Some(
                "check the API key (--api-key or WSPROBE_API_KEY) and the stage in the URL; \
                 an IAM-protected stage wants a signed request (--sigv4)"
                    .into(),
            ),
            Self::Rejected { status: 404, .. } => {
                Some("nothing answers WebSocket upgrades at this path; check the stage in the URL".into())
            }
            Self::Rejected { status: 429, .. } => {
                Some("the server is throttling new connections; slow down and retry".into())
            }
            Self::Rejected { status: 500..=599, .. } => Some(
                "the server failed while accepting the connection (e.g. its $connect handler)".into(),
            ),
            Self::Refused { .. } => Some("is the server running, and is the port right?".into()),
            // The proxy may come from --proxy, a stage profile or the environment.
            Self::Proxy { .. } => Some(
                "check the proxy (--proxy, a stage's `proxy`, or https_proxy, http_proxy, all_proxy); \
                 --no-proxy connects directly"
                    .into(),
            ),
            Self::Dns { .. } => Some("check the host name in the URL".into()),
            Self::Timeout { .. } => Some(
                "is it a WebSocket endpoint? a slow server needs a longer --connect-timeout".into(),
            ),
            Self::Tls { problem, .. } => match problem {
                TlsProblem::UnknownIssuer => Some(
                    "trust its CA with --cacert FILE (or skip verification with -k, for testing only)"
                        .into(),
                ),
                TlsProblem::NameMismatch => Some(
                    "connect with the host name the certificate was issued for (or use -k, for testing only)"
                        .into(),
                ),
                TlsProblem::NotTls => Some("try ws:// instead of wss://".into()),
                TlsProblem::ClientCertificate => {
                    Some("pass a client certificate the server trusts with --cert and --key".into())
                }
                TlsProblem::Expired => Some(
                    "the server needs a renewed certificate, or this machine's clock is wrong \
                     (-k skips verification, for testing only)"
                        .into(),
                ),
                TlsProblem::Other => Some(
                    "`openssl s_client -connect HOST:PORT` shows what the server offers \
                     (-k skips verification, for testing only)"
                        .into(),
                ),
            },
            _ => None,
        }
    }

    /// A short label of the failure's cause, for counting failures by cause (`load`):
    /// `http 403`, `refused`, `dns`, `timeout`, `tls`, `proxy`, `invalid url`, `other`.
    pub fn cause(&self) -> String {
        match self {
            Self::InvalidUrl { .. } => "invalid url".into(),
            Self::Dns { .. } => "dns".into(),
            Self::Refused { .. } => "refused".into(),
            Self::Timeout { .. } => "timeout".into(),
            Self::Tls { .. } => "tls".into(),
            Self::Rejected { status, .. } => format!("http {status}"),
            Self::Proxy { .. } => "proxy".into(),
            Self::Other { .. } => "other".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_show_status_reason_and_body() {
        let error = ConnectError::Rejected {
            status: 403,
            reason: "Forbidden".into(),
            body: r#"{"message":"Forbidden"}"#.into(),
            headers: Box::default(),
        };
        assert_eq!(
            error.to_string(),
            r#"handshake rejected: 403 Forbidden {"message":"Forbidden"}"#
        );
        assert_eq!(error.cause(), "http 403");
        assert!(error.hint().unwrap().contains("--api-key"));
        let bare = ConnectError::Rejected {
            status: 401,
            reason: "Unauthorized".into(),
            body: String::new(),
            headers: Box::default(),
        };
        assert_eq!(bare.to_string(), "handshake rejected: 401 Unauthorized");
    }

    #[test]
    fn the_proxy_hint_names_every_place_a_proxy_comes_from() {
        let error = ConnectError::Proxy {
            proxy: "127.0.0.1:3128".into(),
            reason: "it refused the tunnel".into(),
        };
        let hint = error.hint().unwrap();
        for place in ["--proxy", "`proxy`", "https_proxy", "--no-proxy"] {
            assert!(hint.contains(place), "{hint}");
        }
    }

    #[test]
    fn timeouts_read_humanely() {
        let error = ConnectError::Timeout {
            url: "ws://h/dev".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            error.to_string(),
            "timed out after 1s 500ms connecting to ws://h/dev"
        );
        assert_eq!(error.cause(), "timeout");
    }
}
