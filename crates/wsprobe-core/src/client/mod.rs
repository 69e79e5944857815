//! Opening a connection: URL checks, handshake headers (auth, API key, subprotocols,
//! origin), TCP with a timeout, TLS through rustls, and the WebSocket handshake, with each
//! way of failing told apart so the user learns what went wrong.
//!
//! DNS, TCP, TLS and the upgrade are done one step at a time (rather than through
//! tokio-tungstenite's all-in-one `connect_async`) so that [`ConnectError`] can say which
//! step failed: [`ConnectError::Dns`], [`ConnectError::Refused`], [`ConnectError::Tls`],
//! [`ConnectError::Rejected`] and, for the whole of it, [`ConnectError::Timeout`].

mod error;
pub mod http;
mod local_address;
pub mod management;
mod proxy;
mod stream;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

pub use error::{ConnectError, TlsProblem};
pub use local_address::LocalAddresses;
use local_address::Source;
pub use proxy::{ProxyServer, ProxySettings};
pub use stream::Stream;
use stream::Transport;
pub use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::options::{ConfigError, ConnectOptions, ProxyChoice, Warning};
pub use crate::options::{DEFAULT_CONNECT_TIMEOUT, TlsFiles};
use crate::secret::Secret;
use crate::transcript::{Event, SharedObserver};
use crate::values::Header;

/// Everything needed to open connections, built once (files are read here, not per
/// connection) and shared: `load` opens thousands of connections with one of these.
/// Cloning is cheap: the TLS configuration is behind an `Arc`, and clones share it.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Extra handshake headers (`-H`). A name given here replaces a header wsprobe would
    /// set itself (e.g. `Host`); the same name given twice sends both values.
    pub headers: Vec<Header>,
    /// `Authorization` header value (`--auth`).
    pub auth: Option<Secret>,
    /// `x-api-key` header value (`--api-key`).
    pub api_key: Option<Secret>,
    /// Subprotocols offered in `Sec-WebSocket-Protocol` (`-s`), in order of preference.
    pub subprotocols: Vec<String>,
    /// `Origin` header (`-o`).
    pub origin: Option<String>,
    /// Limit on DNS, TCP, TLS and the handshake together (`--connect-timeout`).
    pub connect_timeout: Duration,
    /// tungstenite's buffer and size limits; `load` shrinks the buffers to keep tens of
    /// thousands of connections in memory.
    pub websocket: WebSocketConfig,
    /// TLS for `wss://` URLs: trusted roots, client certificate, or no verification
    /// (built on the first `wss://` connection).
    pub tls: TlsConfig,
    /// Resolve each host name once and reuse the addresses (see [`ClientConfig::cache_dns`]);
    /// `None` resolves on every connect.
    pub dns_cache: Option<DnsCache>,
    /// HTTP proxies to tunnel through (see [`ClientConfig::from_options`]);
    /// `None` connects directly.
    pub proxy: Option<ProxySettings>,
    /// Signs the upgrade request with AWS SigV4 (`--sigv4`, `--sigv4-query`); `None`
    /// sends it unsigned.
    pub signer: Option<crate::aws::Signer>,
    /// Source addresses to bind the TCP connections to, in turn (`load --local-address`);
    /// empty lets the system choose. Through a proxy, they bind the connection to the proxy.
    pub local_addresses: LocalAddresses,
}

/// Host names resolved once and shared by every connection of a configuration, so that
/// `load` opening thousands of connections does not ask the resolver thousands of times.
/// Failed lookups are not cached.
#[derive(Clone, Debug, Default)]
pub struct DnsCache(Arc<std::sync::Mutex<ResolvedHosts>>);

/// Addresses by host name and port.
type ResolvedHosts = HashMap<(String, u16), Arc<[SocketAddr]>>;

impl DnsCache {
    fn get(&self, host: &str, port: u16) -> Option<Arc<[SocketAddr]>> {
        // A poisoned lock only means another connect panicked mid-insert: the map is fine.
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(&(host.to_owned(), port)).cloned()
    }

    fn put(&self, host: &str, port: u16, addresses: Arc<[SocketAddr]>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert((host.to_owned(), port), addresses);
    }
}

/// The TLS configuration of `wss://` connections, built when the first one needs it:
/// loading the platform's trusted roots costs milliseconds that a `ws://` session (or a
/// `connect` to the bundled backend) never needs. The files (`--cacert`, `--cert`,
/// `--key`) are read and checked when it is created, so their errors come before anything
/// connects. Clones share one build.
#[derive(Clone, Debug)]
pub struct TlsConfig(Arc<TlsState>);

#[derive(Debug)]
struct TlsState {
    /// The files, read and checked.
    material: tls::TlsMaterial,
    /// The configuration, once built (or why it could not be).
    built: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl TlsConfig {
    /// Reads and checks the files `files` names now; the platform's roots are loaded on
    /// first use. An unreadable or unusable file is an error naming it.
    pub fn new(files: &TlsFiles) -> Result<Self, ConfigError> {
        let options = tls::TlsOptions {
            cacert: files.cacert.as_deref(),
            client_identity: files
                .client_identity
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
            insecure: files.insecure,
        };
        let material = tls::read_material(&options).map_err(ConfigError)?;
        Ok(Self(Arc::new(TlsState {
            material,
            built: OnceLock::new(),
        })))
    }

    /// The platform's trusted roots, nothing else (loaded on first use).
    pub fn platform() -> Self {
        Self(Arc::new(TlsState {
            material: tls::TlsMaterial::default(),
            built: OnceLock::new(),
        }))
    }

    /// The rustls configuration, built on the first call (by any clone) and shared.
    pub fn get(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.0
            .built
            .get_or_init(|| tls::build(&self.0.material, true))
            .clone()
    }

    /// Whether the configuration has been built (the platform's roots loaded).
    pub fn is_built(&self) -> bool {
        self.0.built.get().is_some()
    }
}

impl Default for ClientConfig {
    /// No extra headers, a 10 s timeout, tungstenite's default limits, and TLS that trusts
    /// the platform's roots (loaded on the first `wss://` connection).
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            auth: None,
            api_key: None,
            subprotocols: Vec::new(),
            origin: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            websocket: WebSocketConfig::default(),
            tls: TlsConfig::platform(),
            dns_cache: None,
            proxy: None,
            signer: None,
            local_addresses: LocalAddresses::default(),
        }
    }
}

impl ClientConfig {
    /// Builds the configuration from connection options: reads the TLS files once,
    /// checks every header value, reads AWS credentials when signing is asked for, and
    /// takes proxies from the environment (`https_proxy`, `http_proxy`, `all_proxy`,
    /// `no_proxy`) unless the options say otherwise. Returns what the user should be warned
    /// about (no certificate verification, an ignored proxy variable) for the caller to show.
    pub fn from_options(options: &ConnectOptions) -> Result<(Self, Vec<Warning>), ConfigError> {
        if options.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "the connect timeout must be longer than 0s",
            ));
        }
        let mut warnings = Vec::new();
        let proxy = match &options.proxy {
            ProxyChoice::Direct => None,
            ProxyChoice::Through(url) => {
                let server = ProxyServer::parse(url.expose())
                    .map_err(|why| ConfigError::new(format!("proxy: {why}")))?;
                Some(ProxySettings::everything_through(server))
            }
            ProxyChoice::FromEnvironment => {
                let (proxy, ignored) = ProxySettings::from_lookup(|name| std::env::var(name).ok());
                warnings.extend(ignored.into_iter().map(Warning));
                proxy
            }
        };
        let signer = options
            .signing
            .as_ref()
            .map(crate::aws::signer_for)
            .transpose()?;
        let config = Self {
            headers: options.headers.clone(),
            auth: options.auth.clone(),
            api_key: options.api_key.clone(),
            subprotocols: options.subprotocols.clone(),
            origin: options.origin.clone(),
            connect_timeout: options.connect_timeout,
            // A message larger than the whole inbox could not be kept for a wait anyway.
            websocket: WebSocketConfig::default()
                .max_message_size(Some(options.inbox.bytes))
                .max_frame_size(Some(options.inbox.bytes)),
            tls: TlsConfig::new(&options.tls)?,
            dns_cache: None,
            proxy,
            signer,
            local_addresses: LocalAddresses::default(),
        };
        config.handshake_headers().map_err(ConfigError)?;
        if options.tls.insecure {
            warnings.push(Warning(
                "-k/--insecure: server certificates are NOT verified; anyone on the network \
                 path can read and change this traffic"
                    .into(),
            ));
        }
        Ok((config, warnings))
    }

    /// Resolves each host name once, on the first connect, and reuses its addresses for
    /// every later connect made with this configuration (or a clone of it).
    pub fn cache_dns(mut self) -> Self {
        self.dns_cache = Some(DnsCache::default());
        self
    }

    /// Shrinks tungstenite's per-connection buffers from 128 KiB each to a 4 KiB read
    /// buffer and no write buffer (every frame is written at once: no batching that would
    /// add latency). Message size limits are unchanged. For `load`: a session then costs
    /// a small fraction of the memory (`load` measures about 6 KiB per idle connection),
    /// so 10,000 idle connections fit.
    pub fn small_buffers(mut self) -> Self {
        self.websocket = self.websocket.read_buffer_size(4096).write_buffer_size(0);
        self
    }

    /// The headers added to the upgrade request, checked: wsprobe's own (from `--auth`,
    /// `--api-key`, `-s`, `-o`) and the extra ones (`-H`), in order. Errors never include
    /// a header's value, which may be a secret.
    fn handshake_headers(&self) -> Result<HandshakeHeaders, String> {
        let mut own = Vec::with_capacity(4);
        if let Some(auth) = &self.auth {
            let value = sensitive_value(auth)
                .map_err(|_| "the --auth value contains a character not allowed in a header")?;
            own.push((header::AUTHORIZATION, value));
        }
        if let Some(key) = &self.api_key {
            let value = sensitive_value(key)
                .map_err(|_| "the --api-key value contains a character not allowed in a header")?;
            own.push((HeaderName::from_static("x-api-key"), value));
        }
        if !self.subprotocols.is_empty() {
            let offered = self.subprotocols.join(", ");
            let value = HeaderValue::from_str(&offered)
                .map_err(|_| format!("`{offered}` is not a valid subprotocol list"))?;
            own.push((header::SEC_WEBSOCKET_PROTOCOL, value));
        }
        if let Some(origin) = &self.origin {
            let value = HeaderValue::from_bytes(origin.as_bytes())
                .map_err(|_| format!("`{origin}` is not a valid Origin header value"))?;
            own.push((header::ORIGIN, value));
        }
        let mut extra = Vec::with_capacity(self.headers.len());
        for given in &self.headers {
            let name = HeaderName::from_bytes(given.name.as_bytes())
                .map_err(|_| format!("`{}` is not a valid header name", given.name))?;
            let value = HeaderValue::from_bytes(given.value.as_bytes()).map_err(|_| {
                format!(
                    "the value of header `{}` contains a character not allowed in a header",
                    given.name
                )
            })?;
            extra.push((name, value));
        }
        Ok(HandshakeHeaders { own, extra })
    }
}

/// The checked headers of an upgrade request.
#[derive(Debug)]
struct HandshakeHeaders {
    /// From `--auth`, `--api-key`, `-s`, `-o`.
    own: Vec<(HeaderName, HeaderValue)>,
    /// From `-H`, in order.
    extra: Vec<(HeaderName, HeaderValue)>,
}

/// A header value that `http` will keep out of its `Debug` output.
fn sensitive_value(secret: &Secret) -> Result<HeaderValue, header::InvalidHeaderValue> {
    let mut value = HeaderValue::from_bytes(secret.expose().as_bytes())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The upgrade request for `url`: tungstenite's required headers (Host, Upgrade, key, …),
/// then user credentials from the URL (`ws://user:pass@host` → Basic auth, unless
/// `--auth` is given), then wsprobe's own headers, then the `-H` headers. An `-H` header
/// replaces any header of the same name set before it; repeated `-H` names add up. With a
/// signer, the request is then signed (headers, or a presigned query string).
fn build_request(url: &Url, config: &ClientConfig) -> Result<Request, ConnectError> {
    let other = |reason: String| ConnectError::Other {
        url: redacted_url(url),
        reason,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::InvalidUrl {
            url: redacted_url(url),
            reason: e.to_string(),
        })?;
    let HandshakeHeaders { own, extra } = config.handshake_headers().map_err(other)?;
    let headers = request.headers_mut();
    if !url.username().is_empty() && config.auth.is_none() {
        headers.insert(header::AUTHORIZATION, basic_auth(url).map_err(other)?);
    }
    for (name, value) in own {
        headers.insert(name, value);
    }
    let mut replaced: Vec<HeaderName> = Vec::with_capacity(extra.len());
    for (name, value) in extra {
        if replaced.contains(&name) {
            headers.append(name, value);
        } else {
            replaced.push(name.clone());
            headers.insert(name, value);
        }
    }
    // Last, so the signature covers the request as it will be sent.
    if let Some(signer) = &config.signer {
        let user_authorization = config.auth.is_some()
            || !url.username().is_empty()
            || config
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("authorization"));
        if signer.mode() == crate::aws::SignatureMode::Headers && user_authorization {
            return Err(other(
                "--sigv4 signs in the Authorization header, which an auth option also sets; \
                 sign with --sigv4-query to send both"
                    .into(),
            ));
        }
        signer.sign(&mut request, b"").map_err(|e| match e {
            crate::aws::SignError::NoRegion { .. } => ConnectError::InvalidUrl {
                url: redacted_url(url),
                reason: e.to_string(),
            },
            crate::aws::SignError::Invalid(_) => other(e.to_string()),
        })?;
    }
    Ok(request)
}

/// `Basic base64(user:password)` from the URL's user information (percent-decoded).
fn basic_auth(url: &Url) -> Result<HeaderValue, String> {
    use base64::Engine;
    let decode = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let mut credentials = decode(url.username());
    credentials.push(b':');
    credentials.extend(decode(url.password().unwrap_or_default()));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| "the user and password in the URL do not make a valid header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Parses what a user typed as a WebSocket URL. Only `ws://` and `wss://` are accepted; a
/// missing scheme or an `http(s)://` one gets an error that suggests the right one.
pub fn parse_url(text: &str) -> Result<Url, ConnectError> {
    let given = text.trim();
    // Everything this function says about the URL shows it without its secrets.
    let redacted = redacted_url_text(given);
    let text = redacted.as_str();
    let invalid = |reason: String| ConnectError::InvalidUrl {
        url: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(invalid(
            "the URL is empty; write e.g. ws://127.0.0.1:8080/dev".into(),
        ));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        if let Some(fixed) = mistyped_scheme(text) {
            return Err(invalid(format!(
                "the scheme is mistyped; did you mean {fixed}?"
            )));
        }
        return Err(invalid(format!(
            "it has no scheme; write ws://{text} or wss://{text}"
        )));
    };
    let suggestion = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "wss" => None,
        "http" => Some(format!("ws://{rest}")),
        "https" => Some(format!("wss://{rest}")),
        _ => {
            return Err(invalid(format!(
                "`{scheme}://` is not a WebSocket scheme; write ws:// or wss://"
            )));
        }
    };
    if let Some(suggestion) = suggestion {
        return Err(invalid(format!(
            "WebSocket URLs start with ws:// or wss://; did you mean {suggestion}?"
        )));
    }
    let url = Url::parse(given).map_err(|e| invalid(e.to_string()))?;
    match url.host() {
        None => return Err(invalid("it has no host".into())),
        Some(Host::Domain("")) => return Err(invalid("it has no host".into())),
        Some(_) => {}
    }
    if url.fragment().is_some() {
        return Err(invalid(
            "WebSocket URLs cannot have a #fragment (RFC 6455)".into(),
        ));
    }
    Ok(url)
}

/// The URL meant by one whose scheme lacks its `://` (`ws//h/dev`, `wss:/h`, `ws:h`;
/// `http` and `https` become `ws` and `wss`), if it looks like one.
fn mistyped_scheme(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let (typed, scheme) = [
        ("wss", "wss"),
        ("ws", "ws"),
        ("https", "wss"),
        ("http", "ws"),
    ]
    .into_iter()
    .find(|(typed, _)| lower.starts_with(typed))?;
    // The typed scheme is ASCII, so its length is a character boundary of `text` too.
    let rest = &text[typed.len()..];
    if !rest.starts_with([':', '/', ';']) {
        return None;
    }
    let rest = rest.trim_start_matches([':', ';']).trim_start_matches('/');
    (!rest.is_empty()).then(|| format!("{scheme}://{rest}"))
}

/// An open WebSocket connection and what its handshake told us.
#[derive(Debug)]
pub struct Connection {
    /// The WebSocket itself, ready to read and write.
    pub stream: WebSocketStream<Stream>,
    /// The URL connected to.
    pub url: Url,
    /// The address actually connected to (after DNS): the server's, or the proxy's.
    pub peer: SocketAddr,
    /// HTTP status of the handshake response (101).
    pub status: u16,
    /// Headers of the handshake response.
    pub headers: HeaderMap,
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// DNS, TCP, TLS and the handshake together.
    pub connect_time: Duration,
    /// Sees the handshake (see [`connect_observed`]) and, once a session runs on the
    /// connection, every frame.
    pub observer: Option<SharedObserver>,
}

/// Opens a WebSocket connection to `url`: DNS, TCP, TLS for `wss://`, then the upgrade
/// with the configured headers, all of it within `config.connect_timeout`.
pub async fn connect(url: &Url, config: &ClientConfig) -> Result<Connection, ConnectError> {
    connect_observed(url, config, None).await
}

/// [`connect`], telling `observer` about the handshake: the request as sent, then the
/// response (the `101`, or a refusal with its body), or why nothing answered. The
/// connection keeps the observer, so that a [`crate::session::Session`] started on it
/// reports every frame to it too.
pub async fn connect_observed(
    url: &Url,
    config: &ClientConfig,
    observer: Option<SharedObserver>,
) -> Result<Connection, ConnectError> {
    let started = Instant::now();
    let opening = open(url, config, started, observer.as_ref());
    let result = match tokio::time::timeout(config.connect_timeout, opening).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ConnectError::Timeout {
            url: redacted_url(url),
            after: config.connect_timeout,
        }),
    };
    match (result, observer) {
        (Ok(mut connection), observer) => {
            connection.observer = observer;
            Ok(connection)
        }
        // A refusal was reported with its response.
        (Err(error @ ConnectError::Rejected { .. }), _) | (Err(error), None) => Err(error),
        (Err(error), Some(observer)) => {
            observer.observe(Event::ConnectFailed {
                error: &error.to_string(),
            });
            Err(error)
        }
    }
}

async fn open(
    url: &Url,
    config: &ClientConfig,
    started: Instant,
    observer: Option<&SharedObserver>,
) -> Result<Connection, ConnectError> {
    // Built first: a request that cannot be made should not cost a connection.
    let request = build_request(url, config)?;
    let (transport, peer) = open_transport(url, config, started).await?;
    if let Some(observer) = observer {
        observer.observe(Event::Request {
            method: request.method().as_str(),
            url: &request.uri().to_string(),
            headers: request.headers(),
        });
    }
    let (give_back, handed_back) = oneshot::channel();
    let stream = Stream::handing_back(transport, give_back);

    let handshake =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config.websocket)).await;
    let (mut stream, response) = match handshake {
        Ok(done) => done,
        Err(tungstenite::Error::Http(response)) => {
            // tungstenite kept only the part of the body that came with the headers;
            // read the rest from the transport it dropped, within what time is left.
            let left = config.connect_timeout.saturating_sub(started.elapsed());
            let budget = (left / 2).min(MAX_BODY_WAIT);
            let transport = tokio::time::timeout(budget, handed_back)
                .await
                .ok()
                .and_then(Result::ok);
            let (head, tail) = (*response).into_parts();
            let body =
                complete_body(&head.headers, tail.unwrap_or_default(), transport, budget).await;
            if let Some(observer) = observer {
                observer.observe(Event::Response {
                    status: head.status.as_u16(),
                    headers: &head.headers,
                    body: Some(&String::from_utf8_lossy(&body)),
                });
            }
            return Err(ConnectError::Rejected {
                status: head.status.as_u16(),
                reason: head.status.canonical_reason().unwrap_or("").to_owned(),
                body: shorten(String::from_utf8_lossy(&body).trim(), MAX_REJECTION_BODY),
                headers: Box::new(head.headers),
            });
        }
        Err(e) => return Err(handshake_error(e, url, config)),
    };
    stream.get_mut().keep();
    if let Some(observer) = observer {
        observer.observe(Event::Response {
            status: response.status().as_u16(),
            headers: response.headers(),
            body: None,
        });
    }
    let subprotocol = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Connection {
        stream,
        url: url.clone(),
        peer,
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        subprotocol,
        connect_time: started.elapsed(),
        observer: None,
    })
}

/// Opens the byte stream to `url`'s host: DNS, TCP (directly or through a proxy tunnel)
/// and TLS for `wss://` and `https://`, within what is left of `config.connect_timeout`.
/// Shared by the WebSocket handshake and the HTTP client ([`http`]).
pub(crate) async fn open_transport(
    url: &Url,
    config: &ClientConfig,
    started: Instant,
) -> Result<(Transport, SocketAddr), ConnectError> {
    let invalid = |reason: &str| ConnectError::InvalidUrl {
        url: redacted_url(url),
        reason: reason.to_owned(),
    };
    let secure = match url.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        _ => {
            return Err(invalid(
                "only ws://, wss://, http:// and https:// URLs can be opened",
            ));
        }
    };
    let host = url.host().ok_or_else(|| invalid("it has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("it has no port"))?;

    let (tcp, peer) = match config.proxy.as_ref().and_then(|p| p.for_url(url)) {
        None => {
            let addresses = resolve(&host, port, config.dns_cache.as_ref()).await?;
            let left = config.connect_timeout.saturating_sub(started.elapsed());
            connect_tcp(&addresses, &host, port, left, &config.local_addresses).await?
        }
        Some(via) => {
            // The proxy resolves the server's name; we only resolve the proxy's.
            let proxy_host = match via.host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => Host::Ipv4(ip),
                Ok(std::net::IpAddr::V6(ip)) => Host::Ipv6(ip),
                Err(_) => Host::Domain(via.host.as_str()),
            };
            // Failing to reach the proxy is the proxy's problem, not the server's.
            let unreachable = |error: ConnectError| ConnectError::Proxy {
                proxy: format!("{}:{}", via.host, via.port),
                reason: format!("cannot reach it ({error})"),
            };
            let addresses = resolve(&proxy_host, via.port, config.dns_cache.as_ref())
                .await
                .map_err(unreachable)?;
            let left = config.connect_timeout.saturating_sub(started.elapsed());
            let (mut tcp, peer) = connect_tcp(
                &addresses,
                &proxy_host,
                via.port,
                left,
                &config.local_addresses,
            )
            .await
            .map_err(unreachable)?;
            let target = match &host {
                Host::Domain(name) => (*name).to_owned(),
                Host::Ipv4(ip) => ip.to_string(),
                Host::Ipv6(ip) => ip.to_string(),
            };
            proxy::open_tunnel(&mut tcp, via, &target, port).await?;
            (tcp, peer)
        }
    };
    // Small frames (pings, echoes) must leave at once, not wait for Nagle.
    let _ = tcp.set_nodelay(true);

    let transport = if secure {
        Transport::Tls(Box::new(handshake_tls(tcp, &host, config).await?))
    } else {
        Transport::Plain(tcp)
    };
    Ok((transport, peer))
}

async fn resolve(
    host: &Host<&str>,
    port: u16,
    cache: Option<&DnsCache>,
) -> Result<Arc<[SocketAddr]>, ConnectError> {
    let name = match host {
        Host::Ipv4(ip) => return Ok(Arc::new([SocketAddr::new((*ip).into(), port)])),
        Host::Ipv6(ip) => return Ok(Arc::new([SocketAddr::new((*ip).into(), port)])),
        Host::Domain(name) => *name,
    };
    if let Some(found) = cache.and_then(|cache| cache.get(name, port)) {
        return Ok(found);
    }
    let dns_error = |reason: String| ConnectError::Dns {
        host: name.to_owned(),
        reason,
    };
    let found: Arc<[SocketAddr]> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| dns_error(e.to_string()))?
        .collect();
    if found.is_empty() {
        return Err(dns_error("the name has no addresses".into()));
    }
    if let Some(cache) = cache {
        cache.put(name, port, found.clone());
    }
    Ok(found)
}

/// Tries each address in turn; the first that accepts wins. When a name has several
/// addresses, every one but the last gets only its share of `budget`, so that one
/// unreachable address (say, IPv6 without a route) does not use up the whole timeout.
/// With source addresses (`local`), each attempt binds to the next one of the address's
/// family, and addresses of a family no source address has are skipped.
async fn connect_tcp(
    addresses: &[SocketAddr],
    host: &Host<&str>,
    port: u16,
    budget: Duration,
    local: &LocalAddresses,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let share = budget / u32::try_from(addresses.len()).unwrap_or(u32::MAX).max(1);
    let mut first_other_error = None;
    let mut skipped = 0;
    for (index, &address) in addresses.iter().enumerate() {
        let source = match local.next_for(address) {
            Source::Any => None,
            Source::Bind(source) => Some(source),
            Source::NoneOfFamily => {
                skipped += 1;
                continue;
            }
        };
        let attempt = local_address::connect_from(source, address);
        let result = if index + 1 < addresses.len() {
            match tokio::time::timeout(share, attempt).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}", humantime::format_duration(share)),
                )),
            }
        } else {
            // The last address may take what is left: the caller's timeout bounds it.
            attempt.await
        };
        match result {
            Ok(tcp) => return Ok((tcp, address)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                first_other_error.get_or_insert((address, e));
            }
        }
    }
    let shown_host = match host {
        Host::Ipv6(ip) => format!("[{ip}]:{port}"),
        other => format!("{other}:{port}"),
    };
    if skipped == addresses.len() {
        let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
        let theirs = addresses.first().is_some_and(SocketAddr::is_ipv4);
        return Err(ConnectError::Other {
            url: shown_host,
            reason: format!(
                "it has only {} addresses, and every local address to bind to is {} \
                 (a socket connects only within its family)",
                family(theirs),
                family(!theirs)
            ),
        });
    }
    Err(match first_other_error {
        // Every address refused: nothing listens there.
        None => ConnectError::Refused { addr: shown_host },
        Some((address, e)) => ConnectError::Other {
            url: shown_host,
            reason: format!("TCP connect to {address} failed: {e}"),
        },
    })
}

async fn handshake_tls(
    tcp: TcpStream,
    host: &Host<&str>,
    config: &ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    use rustls::pki_types::ServerName;
    let shown_host = host.to_string();
    let tls_error = |(reason, problem): (String, TlsProblem)| ConnectError::Tls {
        host: shown_host.clone(),
        reason,
        problem,
    };
    let server_name = match host {
        Host::Ipv4(ip) => ServerName::IpAddress((*ip).into()),
        Host::Ipv6(ip) => ServerName::IpAddress((*ip).into()),
        Host::Domain(name) => ServerName::try_from((*name).to_owned()).map_err(|_| {
            tls_error((
                format!("`{name}` is not a valid TLS server name"),
                TlsProblem::Other,
            ))
        })?,
    };
    let rustls_config = config
        .tls
        .get()
        .map_err(|reason| tls_error((reason, TlsProblem::Other)))?;
    let connector = tokio_rustls::TlsConnector::from(rustls_config);
    connector.connect(server_name, tcp).await.map_err(|e| {
        // tokio-rustls wraps rustls' own error in the io::Error.
        let reason = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls_error) => tls::explain(rustls_error, &shown_host),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => (
                "the server closed the connection during the TLS handshake \
                 (is it a plain ws:// endpoint?)"
                    .into(),
                TlsProblem::NotTls,
            ),
            None => (e.to_string(), TlsProblem::Other),
        };
        tls_error(reason)
    })
}

/// Longest response body kept in [`ConnectError::Rejected`]: enough for any API error
/// message, short enough for a terminal.
const MAX_REJECTION_BODY: usize = 2048;

fn handshake_error(error: tungstenite::Error, url: &Url, config: &ClientConfig) -> ConnectError {
    use tungstenite::error::{ProtocolError, SubProtocolError};
    let other = |reason: String| ConnectError::Other {
        url: redacted_url(url),
        reason,
    };
    match error {
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(why)) => {
            other(match why {
                SubProtocolError::NoSubProtocol => format!(
                    "the server accepted none of the offered subprotocols ({})",
                    config.subprotocols.join(", ")
                ),
                SubProtocolError::ServerSentSubProtocolNoneRequested => {
                    "the server chose a subprotocol although none was offered".into()
                }
                SubProtocolError::InvalidSubProtocol => {
                    "the server chose a subprotocol that was not offered".into()
                }
            })
        }
        tungstenite::Error::Protocol(ProtocolError::HandshakeIncomplete)
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => {
            other("the server closed the connection during the WebSocket handshake".into())
        }
        tungstenite::Error::Io(e) => {
            // With TLS 1.3 the server checks a client certificate after our side of the
            // TLS handshake is done, so its refusal arrives here, as a TLS alert.
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls_error) => {
                    let host = url.host_str().unwrap_or_default().to_owned();
                    let (reason, problem) = tls::explain(rustls_error, &host);
                    ConnectError::Tls {
                        host,
                        reason,
                        problem,
                    }
                }
                None => other(format!("during the WebSocket handshake: {e}")),
            }
        }
        // A TLS server answers a plain request with bytes that are not HTTP at all.
        tungstenite::Error::Protocol(ProtocolError::HttparseError(_)) if url.scheme() == "ws" => {
            other("the server's reply is not HTTP: is it a TLS endpoint? try wss://".into())
        }
        tungstenite::Error::Protocol(e) => other(format!(
            "the server's reply is not a valid WebSocket handshake ({e})"
        )),
        e => other(e.to_string()),
    }
}

/// Longest a rejection's body is read for, once its headers are in.
const MAX_BODY_WAIT: Duration = Duration::from_secs(2);
/// Most bytes of a rejection's body read from the socket.
const MAX_BODY_READ: usize = 64 * 1024;

/// The whole body of a rejected handshake: `body` is what came with the headers; the rest
/// (per `Content-Length`, chunked encoding, or up to the end of the connection) is read
/// from `transport` within `budget`. Whatever was read by then is returned.
async fn complete_body(
    headers: &HeaderMap,
    mut body: Vec<u8>,
    transport: Option<Transport>,
    budget: Duration,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let complete = |body: &[u8]| match content_length {
        Some(length) => body.len() >= length,
        None if chunked => body.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    if let Some(mut transport) = transport {
        let _ = tokio::time::timeout(budget, async {
            let mut buffer = [0u8; 4096];
            while !complete(&body) && body.len() < MAX_BODY_READ {
                match transport.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buffer[..n]),
                }
            }
        })
        .await;
    }
    if let Some(length) = content_length {
        body.truncate(length);
    } else if chunked {
        body = dechunk(&body).unwrap_or(body);
    }
    body
}

/// Decodes a chunked HTTP body; `None` if it is malformed (then the raw bytes are shown).
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        // Chunk extensions (`;name=value`) are allowed after the size.
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        // A body cut short by the read budget keeps what arrived.
        let available = size.min(raw.len());
        out.extend_from_slice(&raw[..available]);
        if available < size {
            return Some(out);
        }
        raw = raw.get(size + 2..)?;
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// The URL as it may be shown in messages, logs and reports: without its password, and
/// with the values of query parameters that look like credentials (`token`, `key`,
/// `auth`, `signature`, …) redacted, as browser clients often put a token there.
pub fn redacted_url(url: &Url) -> String {
    redacted_url_text(url.as_str())
}

/// [`redacted_url`] for a URL as typed, which may not even parse (a usage error shows it):
/// the password of `scheme://user:password@host` and secret-looking query values are
/// replaced, the rest is kept as written. The one URL redaction; every line that shows a
/// URL goes through it.
pub fn redacted_url_text(text: &str) -> String {
    use crate::secret::{REDACTED, name_looks_secret};
    // `scheme://` is optional: `user:pw@host/dev` is redacted too.
    let authority_start = text.find("://").map_or(0, |i| i + 3);
    let after = &text[authority_start..];
    let authority_len = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_len];
    let mut shown = String::with_capacity(text.len());
    shown.push_str(&text[..authority_start]);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    shown.push_str(user);
                    shown.push(':');
                    shown.push_str(REDACTED);
                }
                None => shown.push_str(userinfo),
            }
            shown.push('@');
            shown.push_str(host);
        }
        None => shown.push_str(authority),
    }
    let rest = &after[authority_len..];
    let (before_fragment, fragment) = match rest.find('#') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            shown.push_str(path);
            shown.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) => {
                        let decoded =
                            percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                        if name_looks_secret(&decoded) {
                            format!("{name}={REDACTED}")
                        } else {
                            pair.to_owned()
                        }
                    }
                    None => pair.to_owned(),
                })
                .collect();
            shown.push_str(&pairs.join("&"));
        }
        None => shown.push_str(before_fragment),
    }
    shown.push_str(fragment);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(text: &str) -> String {
        match parse_url(text) {
            Err(ConnectError::InvalidUrl { reason, .. }) => reason,
            other => panic!("expected InvalidUrl for {text}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_ws_and_wss() {
        let url = parse_url(" ws://127.0.0.1:8080/dev ").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:8080/dev");
        let url = parse_url("wss://abc123.execute-api.eu-west-1.amazonaws.com/dev?x=1").unwrap();
        assert_eq!(url.port_or_known_default(), Some(443));
        assert_eq!(parse_url("WS://[::1]:9/").unwrap().scheme(), "ws");
    }

    #[test]
    fn missing_scheme_suggests_ws_and_wss() {
        let reason = reason_of("localhost:8080/dev");
        assert!(reason.contains("ws://localhost:8080/dev"), "{reason}");
        assert!(reason.contains("wss://localhost:8080/dev"), "{reason}");
    }

    #[test]
    fn a_mistyped_scheme_suggests_the_url_meant() {
        assert_eq!(
            reason_of("ws//host/dev"),
            "the scheme is mistyped; did you mean ws://host/dev?"
        );
        assert!(reason_of("wss:/h/dev").contains("did you mean wss://h/dev?"));
        assert!(reason_of("WSS:h:443/dev").contains("did you mean wss://h:443/dev?"));
        assert!(reason_of("https//h/dev").contains("did you mean wss://h/dev?"));
        assert!(reason_of("ws.example.com/dev").contains("no scheme"));
        assert!(reason_of("ws//").contains("no scheme"));
    }

    #[test]
    fn http_schemes_suggest_their_websocket_twin() {
        assert!(reason_of("http://h/dev").contains("did you mean ws://h/dev?"));
        assert!(reason_of("https://h/dev").contains("did you mean wss://h/dev?"));
        assert!(reason_of("ftp://h/").contains("not a WebSocket scheme"));
    }

    #[test]
    fn other_malformed_urls() {
        assert!(reason_of("").contains("empty"));
        assert!(reason_of("ws://").contains("host"));
        assert!(reason_of("ws://h/dev#part").contains("fragment"));
        assert!(!reason_of("ws://h:99999/").is_empty());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"7\r\n{\"a\":1}\r\n3;x=y\r\nabc\r\n0\r\n\r\n").as_deref(),
            Some(&b"{\"a\":1}abc"[..])
        );
        assert_eq!(dechunk(b"5\r\nab").as_deref(), Some(&b"ab"[..]));
        assert_eq!(dechunk(b"zz\r\nab"), None);
    }

    #[test]
    fn shown_url_hides_a_password_and_query_tokens() {
        let url = Url::parse("wss://user:hunter2@h/dev").unwrap();
        assert_eq!(redacted_url(&url), "wss://user:<redacted>@h/dev");
        let url = Url::parse("wss://h/dev?room=7&access_token=abc123&X-Api-Key=k9").unwrap();
        let shown = redacted_url(&url);
        assert_eq!(
            shown,
            "wss://h/dev?room=7&access_token=<redacted>&X-Api-Key=<redacted>"
        );
        let plain = Url::parse("ws://h/dev?room=7").unwrap();
        assert_eq!(redacted_url(&plain), "ws://h/dev?room=7");
        let presigned = "wss://h/dev?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab12&X-Amz-Date=1";
        assert_eq!(
            redacted_url_text(presigned),
            "wss://h/dev?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>&X-Amz-Date=1"
        );
        // As typed, even when it does not parse.
        assert_eq!(
            redacted_url_text("htp://user:SEKRIT@h:99999/x?token=t#f"),
            "htp://user:<redacted>@h:99999/x?token=<redacted>#f"
        );
        assert_eq!(
            redacted_url_text("user:SEKRIT@h/dev"),
            "user:<redacted>@h/dev"
        );
        assert_eq!(redacted_url_text("h/dev?a=1&b"), "h/dev?a=1&b");
    }

    fn request_headers(url: &str, config: &ClientConfig) -> Vec<(String, String)> {
        let request = build_request(&Url::parse(url).unwrap(), config).unwrap();
        request
            .headers()
            .iter()
            .filter(|(name, _)| !name.as_str().starts_with("sec-websocket-key"))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn request_header_precedence() {
        let config = ClientConfig {
            auth: Some(Secret::new("Bearer flag")),
            api_key: Some(Secret::new("k1")),
            subprotocols: vec!["a".into(), "b".into()],
            origin: Some("https://o.example".into()),
            headers: vec![
                Header {
                    name: "x-api-key".into(),
                    value: "k2".into(),
                },
                Header {
                    name: "X-Trace".into(),
                    value: "1".into(),
                },
                Header {
                    name: "x-trace".into(),
                    value: "2".into(),
                },
            ],
            ..ClientConfig::default()
        };
        let headers = request_headers("ws://user:pw@h:9/dev?x=1", &config);
        let get = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("host"), ["h:9"]);
        assert_eq!(get("authorization"), ["Bearer flag"]);
        assert_eq!(get("x-api-key"), ["k2"]);
        assert_eq!(get("x-trace"), ["1", "2"]);
        assert_eq!(get("sec-websocket-protocol"), ["a, b"]);
        assert_eq!(get("origin"), ["https://o.example"]);
    }

    #[tokio::test]
    async fn plain_connections_never_load_the_platform_roots() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio_tungstenite::accept_async(stream).await.unwrap()
        });
        let config = ClientConfig::default();
        let clone = config.clone();
        let url = parse_url(&format!("ws://{address}/dev")).unwrap();
        let connection = connect(&url, &config).await.unwrap();
        assert!(!config.tls.is_built());
        drop(connection);
        drop(server.await.unwrap());
        // The first use builds it, once, for every clone.
        let built = clone.tls.get().unwrap();
        assert!(config.tls.is_built());
        assert!(Arc::ptr_eq(&built, &config.tls.get().unwrap()));
    }

    #[tokio::test]
    async fn the_dns_cache_answers_for_names_it_has_seen() {
        let cache = DnsCache::default();
        let local = resolve(&Host::Domain("localhost"), 80, Some(&cache))
            .await
            .unwrap();
        assert_eq!(cache.get("localhost", 80), Some(local));
        assert_eq!(cache.get("localhost", 81), None);
        // A cached name is not looked up again: this one would not resolve.
        let planted: Arc<[SocketAddr]> = Arc::new(["127.0.0.1:9".parse().unwrap()]);
        cache.put("nowhere.invalid", 9, planted.clone());
        let found = resolve(&Host::Domain("nowhere.invalid"), 9, Some(&cache))
            .await
            .unwrap();
        assert_eq!(found, planted);
        // Without the cache it is a DNS error, and failures are not cached.
        let error = resolve(&Host::Domain("nowhere.invalid"), 10, Some(&cache))
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectError::Dns { .. }), "{error:?}");
        assert_eq!(cache.get("nowhere.invalid", 10), None);
    }

    /// A loopback address whose accept queue is full, so the kernel drops new SYNs and a
    /// connect to it hangs: an unreachable address without leaving the machine.
    async fn black_hole() -> (SocketAddr, Vec<TcpStream>, tokio::net::TcpListener) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        // Fill the queue: connects succeed until it is full, then hang.
        while let Ok(Ok(tcp)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(tcp);
        }
        (addr, fillers, listener)
    }

    #[tokio::test]
    async fn an_unreachable_address_leaves_time_for_the_next() {
        let (hole, _fillers, _listener) = black_hole().await;
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let host = Host::Domain("several.example");
        let budget = Duration::from_millis(600);
        let any = LocalAddresses::default();
        let (_, peer) = connect_tcp(&[hole, closed, good_addr], &host, 1, budget, &any)
            .await
            .unwrap();
        assert_eq!(peer, good_addr);
        let refused = connect_tcp(&[closed, closed], &host, 1, budget, &any).await;
        assert!(matches!(refused, Err(ConnectError::Refused { .. })));
        match connect_tcp(&[hole, closed], &host, 1, budget, &any).await {
            Err(ConnectError::Other { reason, .. }) => {
                assert!(reason.contains("no answer within"), "{reason}")
            }
            other => panic!("expected the black hole's timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn connections_bind_to_a_local_address_of_the_family_they_dial() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let v4 = server.local_addr().unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let host = Host::Domain("both.example");
        let budget = Duration::from_secs(5);
        let local = LocalAddresses::new(vec!["127.0.0.2".parse().unwrap()]);
        // The IPv6 address is skipped, not tried (nothing listens there).
        let (tcp, peer) = connect_tcp(&[v6, v4], &host, 1, budget, &local)
            .await
            .unwrap();
        assert_eq!(peer, v4);
        assert_eq!(tcp.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        match connect_tcp(&[v6], &host, 1, budget, &local).await {
            Err(ConnectError::Other { reason, .. }) => assert!(
                reason.starts_with("it has only IPv6 addresses, and every local address"),
                "{reason}"
            ),
            other => panic!("expected a family mismatch, got {other:?}"),
        }
    }

    #[test]
    fn url_credentials_become_basic_auth() {
        let headers = request_headers("ws://al%20ice:p%40ss@h/dev", &ClientConfig::default());
        let auth = headers.iter().find(|(n, _)| n == "authorization").unwrap();
        // base64("al ice:p@ss")
        assert_eq!(auth.1, "Basic YWwgaWNlOnBAc3M=");
    }

    #[test]
    fn shorten_cuts_on_char_boundaries() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("ééé", 3), "é… (6 bytes in all)");
    }

    #[test]
    fn secrets_stay_out_of_header_errors() {
        let config = ClientConfig {
            auth: Some(Secret::new("Bearer bad\u{7f}secret")),
            ..ClientConfig::default()
        };
        let error = config.handshake_headers().unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }
}
