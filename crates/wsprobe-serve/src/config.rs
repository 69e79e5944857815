//! What a server is configured with: [`ServeConfig`], lowered from `wsprobe serve`'s
//! flags by the binary, or built by hand by `wsprobe connect` and tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wsprobe_core::aws::IamKey;
use wsprobe_core::secret::Secret;

use crate::authorizer::Authorizer;
use crate::lambda::Integrations;
use crate::log::{LogFormat, LogSink};
use crate::routing::{RouteBehaviour, RouteTable, SelectionExpression};

/// Everything that decides how the reference backend behaves.
///
/// `ServeConfig::default()` is API Gateway's stage `dev` running the sample echo app: no
/// API keys or tokens, `$request.body.action`, the built-in `send` route, no `$default`,
/// API Gateway's limits, and no log lines.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Stage name: clients connect to `/{stage}` and manage connections at
    /// `/{stage}/@connections/{id}`.
    pub stage: String,
    /// API keys of which the handshake must carry one as `x-api-key` (403 otherwise).
    /// Empty: no key is required.
    pub api_keys: Vec<Secret>,
    /// Tokens of which the handshake must carry one as `Authorization: Bearer TOKEN`
    /// (401 otherwise). Empty: every client is authorized.
    pub tokens: Vec<Secret>,
    /// Keys of which `$connect` and every `@connections` call must carry a SigV4
    /// signature (service `execute-api`), checked before the API key and the token
    /// (403 otherwise). Empty: no signature is required.
    pub iam_keys: Vec<IamKey>,
    /// The route selection expression, `$request.body.PATH`.
    pub route_selection_expression: SelectionExpression,
    /// Route keys and what they do; `send` (echo the body) is there unless replaced.
    pub routes: RouteTable,
    /// What a message that matches no route gets: `None` sends API Gateway's `Forbidden`
    /// error frame and keeps the connection open.
    pub default_route: Option<RouteBehaviour>,
    /// A connection with no inbound message for this long is closed with 1001.
    pub idle_timeout: Duration,
    /// A connection is closed with 1001 when it has been open this long.
    pub max_connection_duration: Duration,
    /// Largest frame payload accepted in bytes; a bigger one closes with 1009.
    pub max_frame_size: usize,
    /// Largest message (all its frames) accepted in bytes; a bigger one closes with 1009.
    /// Also the largest `@connections` POST body (413 beyond).
    pub max_message_size: usize,
    /// Where log lines go: off, stdout, or captured for tests.
    pub log: LogSink,
    /// Plain access-log lines or one JSON object per line.
    pub log_format: LogFormat,
    /// Serve `wss://` and `https://` with this TLS configuration (see
    /// [`ServeConfig::tls_from_pem`]); `None` serves plain `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Lambda integrations (`--integration`, `--route NAME=lambda:URL`): where events go
    /// and which routes answer. Empty by default: the sample app runs built in.
    pub integrations: Integrations,
    /// A Lambda REQUEST authorizer on `$connect` (`--authorizer`, `--identity-source`); its
    /// endpoint is one of `integrations.endpoints`.
    pub authorizer: Option<Authorizer>,
}

/// API Gateway's shortest integration timeout.
pub const MIN_INTEGRATION_TIMEOUT: Duration = Duration::from_millis(50);
/// API Gateway's longest integration timeout (also the default).
pub const MAX_INTEGRATION_TIMEOUT: Duration = crate::lambda::DEFAULT_TIMEOUT;

/// API Gateway's frame size limit (32 KB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 32 * 1024;
/// API Gateway's message size limit (128 KB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 * 1024;

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            stage: "dev".to_owned(),
            api_keys: Vec::new(),
            tokens: Vec::new(),
            iam_keys: Vec::new(),
            route_selection_expression: SelectionExpression::default(),
            routes: RouteTable::default(),
            default_route: None,
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection_duration: Duration::from_secs(2 * 60 * 60),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            log: LogSink::Off,
            log_format: LogFormat::Plain,
            tls: None,
            integrations: Integrations::default(),
            authorizer: None,
        }
    }
}

impl ServeConfig {
    /// A TLS configuration from a PEM certificate chain and its PEM private key.
    pub fn tls_from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let certs = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("the certificate file holds no certificate".to_owned());
        }
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| format!("the key file is not PEM: {e}"))?
            .ok_or("the key file holds no private key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A TLS configuration with a certificate generated now for `localhost`, `127.0.0.1`
    /// and `::1` (`--tls-self-signed`). The certificate's PEM is written to `path` so
    /// clients can trust it (`--cacert PATH`); the private key stays in memory.
    pub fn tls_self_signed(path: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
        let cert_pem = certified.cert.pem();
        let key_pem = certified.signing_key.serialize_pem();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                format!("--tls-self-signed: cannot create {}: {e}", parent.display())
            })?;
        }
        std::fs::write(path, &cert_pem).map_err(|e| {
            format!(
                "--tls-self-signed: cannot write the certificate to {}: {e}",
                path.display()
            )
        })?;
        Self::tls_from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
    }

    /// Every secret of this configuration, for redacting text that might contain one.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.api_keys
            .iter()
            .chain(self.tokens.iter())
            .chain(self.iam_keys.iter().map(|key| &key.secret))
    }
}

/// Where `--tls-self-signed [PATH]` writes its certificate: PATH, or
/// `wsprobe-serve-PID.pem` in the system's temp directory.
pub fn self_signed_path(given: Option<&Path>) -> PathBuf {
    match given {
        Some(path) => path.to_owned(),
        None => std::env::temp_dir().join(format!("wsprobe-serve-{}.pem", std::process::id())),
    }
}
