//! Connection options and message conventions: what `connect`, `run`, `load` and `manage`
//! are told about opening a connection, as the core's own types. The command line and
//! stage profiles are lowered into [`ConnectOptions`] once, by the binary; this file holds
//! the only copy of every default.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::Secret;
use crate::values::Header;

/// Default handshake limit (`--connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default field that carries the route (`--route-field`): API Gateway's usual selection
/// expression is `$request.body.action`.
pub const DEFAULT_ROUTE_FIELD: &str = "action";
/// Default field that carries the payload of a route-tagged send (`--body-field`).
pub const DEFAULT_BODY_FIELD: &str = "body";
/// Default echo policy (`--echo`): the sample echo app sends the body field back.
pub const DEFAULT_ECHO: EchoPolicy = EchoPolicy::Body;
/// Default number of unconsumed frames a session's inbox keeps (`--inbox-frames`): a
/// script that sleeps for a minute beside a stage chatting at 100 messages a second still
/// finds everything, while a flooding server cannot grow it without bound.
pub const DEFAULT_INBOX_FRAMES: usize = 10_000;
/// Default number of payload bytes a session's inbox keeps (`--inbox-bytes`), which is
/// also the largest message a session accepts: 16 MiB is 128 times API Gateway's largest
/// message (128 KB), and keeps a CI job with a few connections far from any memory limit.
pub const DEFAULT_INBOX_BYTES: usize = 16 * 1024 * 1024;

/// Default of `--reconnect-max`: how many consecutive attempts to reopen a connection may
/// fail before giving up. With the backoff's bounds ([`crate::reconnect`]) ten attempts
/// span about two minutes: a deployment or a short outage is ridden out, a server that is
/// gone is not tried forever.
pub const DEFAULT_RECONNECT_MAX: u32 = 10;

/// How a session is kept going: `--keepalive`/`--keepalive-message`, `--reconnect`,
/// `--reconnect-max` and `--on-connect`. The default does none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// A ping (or a text frame) after every so long without sending; `None`: no keepalive.
    pub keepalive: Option<crate::session::KeepAlive>,
    /// When and how often to reopen a connection the server ended; `None`: never.
    pub reconnect: Option<crate::reconnect::ReconnectPolicy>,
    /// Command lines, as typed at the prompt, run after every open (the first too).
    pub on_connect: Vec<String>,
}

/// How much a session keeps of what arrived and was not consumed yet (by `expect` or
/// `capture`). When either bound is passed, the oldest unconsumed frames are dropped, and
/// counted, to make room: a server that floods cannot run the client out of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxLimits {
    /// The most frames kept (at least 1).
    pub frames: usize,
    /// The most payload bytes kept; also the largest message accepted (a larger one ends
    /// the connection with close code 1009).
    pub bytes: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        Self {
            frames: DEFAULT_INBOX_FRAMES,
            bytes: DEFAULT_INBOX_BYTES,
        }
    }
}

/// What an echo of a route-tagged send looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EchoPolicy {
    /// The value of the body field (the sample echo app's `send` route).
    #[default]
    Body,
    /// The whole message, as sent.
    Full,
    /// No echo is expected.
    Off,
}

impl EchoPolicy {
    /// The names users write, in the order help lists them.
    pub const NAMES: [&str; 3] = ["body", "full", "off"];

    /// The name users write for this policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::Full => "full",
            Self::Off => "off",
        }
    }
}

impl FromStr for EchoPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "body" => Ok(Self::Body),
            "full" => Ok(Self::Full),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "`{other}` is not an echo policy; write body, full or off"
            )),
        }
    }
}

/// Where TLS trust and identity come from (`--cacert`, `--cert`/`--key`, `-k`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of extra roots to trust besides the platform's.
    pub cacert: Option<PathBuf>,
    /// PEM client certificate chain and its PEM private key, for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (no verification at all).
    pub insecure: bool,
}

/// Which HTTP proxy connections go through.
#[derive(Clone, Debug, Default)]
pub enum ProxyChoice {
    /// The proxy environment variables decide (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`).
    #[default]
    FromEnvironment,
    /// Connect directly (`--no-proxy`, or `--proxy ''` as with curl's `-x ""`).
    Direct,
    /// Every connection, loopback included, through this proxy URL (it may hold a password).
    Through(Secret),
}

/// How to sign with AWS SigV4 (`--sigv4`, `--sigv4-query`, `--region`, `--profile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigningChoice {
    /// Presign the URL (query string) instead of signing headers.
    pub query: bool,
    /// The region to sign for; otherwise from an execute-api host, `AWS_REGION`, or the
    /// profile.
    pub region: Option<String>,
    /// The shared-file profile to take keys from; otherwise `AWS_PROFILE`, then `default`.
    pub profile: Option<String>,
}

/// Everything needed to open a connection and to speak the stage's message conventions.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Extra handshake headers, in order. A name given here replaces a header wsprobe would
    /// set itself (e.g. `Host`); the same name given twice sends both values.
    pub headers: Vec<Header>,
    /// `Authorization` header value.
    pub auth: Option<Secret>,
    /// `x-api-key` header value.
    pub api_key: Option<Secret>,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order of preference.
    pub subprotocols: Vec<String>,
    /// `Origin` header.
    pub origin: Option<String>,
    /// Limit on DNS, TCP, TLS and the handshake together.
    pub connect_timeout: Duration,
    /// TLS trust and identity.
    pub tls: TlsFiles,
    /// The HTTP proxy, if any.
    pub proxy: ProxyChoice,
    /// AWS SigV4 signing of the handshake and `@connections` calls; `None` sends them
    /// unsigned.
    pub signing: Option<SigningChoice>,
    /// The JSON fields that carry the route and the payload.
    pub fields: crate::message::RouteFields,
    /// What the echo of a route-tagged send looks like.
    pub echo: EchoPolicy,
    /// The bounds of each session's inbox (`run`, `connect`).
    pub inbox: InboxLimits,
    /// Keepalive, reconnect and `--on-connect` (`run`, `connect`).
    pub session: SessionOptions,
}

impl Default for ConnectOptions {
    /// No headers, the default timeout and conventions, platform TLS, proxies from the
    /// environment, no signing.
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            auth: None,
            api_key: None,
            subprotocols: Vec::new(),
            origin: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: TlsFiles::default(),
            proxy: ProxyChoice::default(),
            signing: None,
            fields: crate::message::RouteFields::default(),
            echo: DEFAULT_ECHO,
            inbox: InboxLimits::default(),
            session: SessionOptions::default(),
        }
    }
}

/// A configuration that cannot work: an unreadable certificate file, a header value that
/// cannot be sent, missing AWS credentials. The message says what and how to fix it, and
/// names no secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Something the user should know about a configuration that works (`-k` turns off
/// verification; a proxy variable was ignored). The front-end decides how to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning(pub String);

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_policy_names_round_trip() {
        for name in EchoPolicy::NAMES {
            assert_eq!(name.parse::<EchoPolicy>().unwrap().name(), name);
        }
        assert!("bodies".parse::<EchoPolicy>().is_err());
    }
}
