//! What a `serve` instance is configured with: [`ServeConfig`], built from the command
//! line by [`ServeConfig::from_args`] or by hand in tests and in other jobs.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::IamKey;
use crate::cli::{DefaultRoute, ServeArgs};
use crate::secret::Secret;

use super::log::{LogFormat, LogSink};
use super::routing::{RouteBehaviour, RouteTable, SelectionExpression};

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
}

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
        }
    }
}

impl ServeConfig {
    /// Builds the configuration the command line asks for, with log lines on stdout
    /// unless `--quiet`. A bad `--route`, expression, stage or size is a usage error.
    pub fn from_args(args: &ServeArgs) -> Result<Self, crate::Error> {
        let stage = args.stage.trim_matches('/');
        if stage.is_empty() || stage.contains('/') || stage.starts_with('@') {
            return Err(crate::Error::usage(format!(
                "--stage `{}` is not a stage name; write e.g. `--stage dev`",
                args.stage
            )));
        }
        let route_selection_expression =
            SelectionExpression::parse(&args.route_selection_expression)
                .map_err(crate::Error::Usage)?;
        let mut routes = RouteTable::default();
        let mut default_route = match args.default_route {
            DefaultRoute::Echo => Some(RouteBehaviour::Echo),
            DefaultRoute::None => None,
        };
        for spec in &args.routes {
            let (name, behaviour) = RouteTable::parse_route(spec).map_err(crate::Error::Usage)?;
            if name == "$default" {
                default_route = Some(behaviour);
            } else {
                routes.insert(name, behaviour);
            }
        }
        let max_frame_size = size_limit("--max-frame-size", args.max_frame_size)?;
        let max_message_size = size_limit("--max-message-size", args.max_message_size)?;
        if max_frame_size > max_message_size {
            return Err(crate::Error::usage(format!(
                "--max-frame-size ({max_frame_size}) is larger than --max-message-size ({max_message_size})"
            )));
        }
        if args.idle_timeout.is_zero() || args.max_connection_duration.is_zero() {
            return Err(crate::Error::usage(
                "--idle-timeout and --max-connection-duration must be longer than zero",
            ));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let read = |path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| {
                        crate::Error::usage(format!("cannot read {}: {e}", path.display()))
                    })
                };
                let config = Self::tls_from_pem(&read(cert)?, &read(key)?).map_err(|e| {
                    crate::Error::usage(format!(
                        "--tls-cert {} / --tls-key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                Some(config)
            }
            _ => None,
        };
        let iam_keys = non_empty(&args.iam_keys)
            .iter()
            .map(|key| IamKey::parse(key.expose()).map_err(crate::Error::Usage))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            stage: stage.to_owned(),
            iam_keys,
            api_keys: non_empty(&args.api_keys),
            tokens: non_empty(&args.tokens),
            route_selection_expression,
            routes,
            default_route,
            idle_timeout: args.idle_timeout,
            max_connection_duration: args.max_connection_duration,
            max_frame_size,
            max_message_size,
            log: if args.quiet {
                LogSink::Off
            } else {
                LogSink::Stdout
            },
            log_format: args.log_format,
            tls,
        })
    }

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

    /// Every secret of this configuration, for redacting text that might contain one.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.api_keys
            .iter()
            .chain(self.tokens.iter())
            .chain(self.iam_keys.iter().map(|key| &key.secret))
    }
}

/// An empty value (e.g. from `WSPROBE_SERVE_TOKENS=""`) would accept an empty header,
/// which nobody means.
fn non_empty(secrets: &[Secret]) -> Vec<Secret> {
    secrets.iter().filter(|s| !s.is_empty()).cloned().collect()
}

fn size_limit(flag: &str, value: u64) -> Result<usize, crate::Error> {
    match usize::try_from(value) {
        Ok(0) => Err(crate::Error::usage(format!("{flag} must be larger than 0"))),
        Ok(size) => Ok(size),
        Err(_) => Err(crate::Error::usage(format!("{flag} {value} is too large"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["wsprobe", "serve"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv) {
            Ok(cli) => match cli.command {
                crate::cli::Command::Serve(args) => args,
                _ => panic!("not serve"),
            },
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_match_api_gateway() {
        let config = ServeConfig::from_args(&args(&["--quiet"])).unwrap();
        let default = ServeConfig::default();
        assert_eq!(config.stage, default.stage);
        assert_eq!(config.idle_timeout, default.idle_timeout);
        assert_eq!(
            config.max_connection_duration,
            default.max_connection_duration
        );
        assert_eq!(config.max_frame_size, 32768);
        assert_eq!(config.max_message_size, 131072);
        assert_eq!(
            config.route_selection_expression.to_string(),
            "$request.body.action"
        );
        assert_eq!(config.routes.get("send"), Some(RouteBehaviour::EchoBody));
        assert!(config.default_route.is_none());
        assert!(matches!(config.log, LogSink::Off));
    }

    #[test]
    fn routes_and_default_route_from_flags() {
        let config = ServeConfig::from_args(&args(&[
            "--route",
            "chat=broadcast",
            "--route",
            "ping=echo",
            "--default-route",
            "echo",
        ]))
        .unwrap();
        assert_eq!(config.routes.get("chat"), Some(RouteBehaviour::Broadcast));
        assert_eq!(config.routes.get("ping"), Some(RouteBehaviour::Echo));
        assert_eq!(config.default_route, Some(RouteBehaviour::Echo));
        assert!(matches!(config.log, LogSink::Stdout));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--route", "chat"][..],
            &["--route", "chat=shout"],
            &["--route", "$connect=echo"],
            &["--route-selection-expression", "action"],
            &["--stage", "/"],
            &["--max-frame-size", "1MiB"],
        ] {
            let result = ServeConfig::from_args(&args(bad));
            assert!(
                matches!(result, Err(crate::Error::Usage(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn iam_keys_from_flags() {
        let config =
            ServeConfig::from_args(&args(&["--iam-key", "AKID1:s1", "--iam-key", "AKID2:s:2"]))
                .unwrap();
        assert_eq!(config.iam_keys.len(), 2);
        assert_eq!(config.iam_keys[1].access_key_id, "AKID2");
        assert_eq!(config.iam_keys[1].secret.expose(), "s:2");
        assert_eq!(config.secrets().count(), 2);
        match ServeConfig::from_args(&args(&["--iam-key", "no-colon-secret"])) {
            Err(crate::Error::Usage(message)) => {
                assert!(!message.contains("no-colon-secret"), "{message}")
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn empty_secrets_are_ignored() {
        let config = ServeConfig::from_args(&args(&["--token", "", "--api-key", "k1"])).unwrap();
        assert!(config.tokens.is_empty());
        assert_eq!(config.api_keys.len(), 1);
    }
}
