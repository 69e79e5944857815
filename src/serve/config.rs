//! What a `serve` instance is configured with: [`ServeConfig`], built from the command
//! line by [`ServeConfig::from_args`] or by hand in tests and in other jobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::aws::IamKey;
use crate::cli::{DefaultRoute, ServeArgs};
use crate::secret::Secret;

use super::lambda::Integrations;
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
    /// Lambda integrations (`--integration`, `--route NAME=lambda:URL`): where events go
    /// and which routes answer. Empty by default: the sample app runs built in.
    pub integrations: Integrations,
}

/// API Gateway's shortest integration timeout.
pub const MIN_INTEGRATION_TIMEOUT: Duration = Duration::from_millis(50);
/// API Gateway's longest integration timeout (also the default).
pub const MAX_INTEGRATION_TIMEOUT: Duration = super::lambda::DEFAULT_TIMEOUT;

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
            Some(DefaultRoute::Echo) => Some(RouteBehaviour::Echo),
            Some(DefaultRoute::None) | None => None,
        };
        if !(MIN_INTEGRATION_TIMEOUT..=MAX_INTEGRATION_TIMEOUT).contains(&args.integration_timeout)
        {
            return Err(crate::Error::usage(format!(
                "--integration-timeout {} is outside API Gateway's range, 50ms to 29s",
                humantime::format_duration(args.integration_timeout)
            )));
        }
        let mut integrations = Integrations {
            timeout: args.integration_timeout,
            concurrency: usize::from(args.integration_concurrency),
            ..Integrations::default()
        };
        let default_integration = match &args.integration {
            Some(text) => {
                let url = Integrations::parse_url(text)
                    .map_err(|e| crate::Error::usage(format!("--integration: {e}")))?;
                Some(integrations.endpoint(url))
            }
            None => None,
        };
        if let Some(index) = default_integration {
            // The user's handler replaces the sample app: everything goes to it.
            integrations.connect = Some(index);
            integrations.disconnect = Some(index);
            routes.remove("send");
            // Unless the user said otherwise: `--default-route none` models an API
            // without `$default` (unmatched messages get the Forbidden frame).
            if args.default_route.is_none() {
                default_route = Some(RouteBehaviour::Lambda(index));
            }
        }
        for spec in &args.routes {
            if let Some((name, url)) = lambda_route(spec) {
                let index = match url {
                    Some(url) => integrations.endpoint(
                        Integrations::parse_url(url)
                            .map_err(|e| crate::Error::usage(format!("--route `{spec}`: {e}")))?,
                    ),
                    None => default_integration.ok_or_else(|| {
                        crate::Error::usage(format!(
                            "--route `{spec}`: `lambda` alone needs --integration URL; or write `{name}=lambda:URL`"
                        ))
                    })?,
                };
                match name {
                    "" => {
                        return Err(crate::Error::usage(format!(
                            "--route `{spec}` has no route name"
                        )));
                    }
                    "$connect" => integrations.connect = Some(index),
                    "$disconnect" => integrations.disconnect = Some(index),
                    "$default" => default_route = Some(RouteBehaviour::Lambda(index)),
                    reserved if reserved.starts_with('$') => {
                        return Err(crate::Error::usage(format!(
                            "--route `{spec}`: route keys starting with `$` are reserved"
                        )));
                    }
                    name => {
                        routes.insert(name, RouteBehaviour::Lambda(index));
                    }
                }
                continue;
            }
            let (name, behaviour) = RouteTable::parse_route(spec).map_err(crate::Error::Usage)?;
            if name == "$default" {
                default_route = Some(behaviour);
            } else {
                routes.insert(name, behaviour);
            }
        }
        for name in &args.route_responses {
            let name = name.trim();
            if name.is_empty() {
                return Err(crate::Error::usage("--route-response needs a route name"));
            }
            integrations.route_responses.insert(name.to_owned());
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
            _ => match &args.tls_self_signed {
                Some(path) => {
                    let path = self_signed_path(path.as_deref());
                    Some(Self::tls_self_signed(&path).map_err(crate::Error::usage)?)
                }
                None => None,
            },
        };
        let iam_keys = non_empty("--iam-key (or WSPROBE_SERVE_IAM_KEYS)", &args.iam_keys)?
            .iter()
            .map(|key| IamKey::parse(key.expose()).map_err(crate::Error::Usage))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            stage: stage.to_owned(),
            iam_keys,
            api_keys: non_empty("--api-key (or WSPROBE_SERVE_API_KEYS)", &args.api_keys)?,
            tokens: non_empty("--token (or WSPROBE_SERVE_TOKENS)", &args.tokens)?,
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
            integrations,
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

/// `NAME=lambda` or `NAME=lambda:URL`: the route name, and the URL when one is given.
fn lambda_route(spec: &str) -> Option<(&str, Option<&str>)> {
    let (name, behaviour) = spec.split_once('=')?;
    let behaviour = behaviour.trim();
    let rest = behaviour.strip_prefix("lambda")?;
    match rest.strip_prefix(':') {
        Some(url) => Some((name.trim(), Some(url))),
        None if rest.is_empty() => Some((name.trim(), None)),
        None => None,
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

/// An empty value is almost always an unset shell variable (`--token "$TOKEN"`): ignoring
/// it would quietly run an open server, and accepting it would match an empty header, so
/// it is refused.
fn non_empty(flag: &str, secrets: &[Secret]) -> Result<Vec<Secret>, crate::Error> {
    if secrets.iter().any(Secret::is_empty) {
        return Err(crate::Error::usage(format!(
            "{flag} was given an empty value (is its variable unset?); give a value or leave \
             the flag out"
        )));
    }
    Ok(secrets.to_vec())
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
    fn lambda_routes_and_the_default_integration() {
        let url = "http://127.0.0.1:9000/2015-03-31/functions/function/invocations";
        let config = ServeConfig::from_args(&args(&[
            "--integration",
            url,
            "--route",
            "send=lambda",
            "--route",
            "chat=lambda:http://127.0.0.1:9001/chat",
            "--route",
            "ping=echo",
            "--route-response",
            "send",
            "--integration-timeout",
            "2s",
        ]))
        .unwrap();
        let lambdas = &config.integrations;
        assert_eq!(lambdas.endpoints.len(), 2);
        assert_eq!(lambdas.endpoints[0].as_str(), url);
        assert_eq!(lambdas.connect, Some(0));
        assert_eq!(lambdas.disconnect, Some(0));
        assert_eq!(config.routes.get("send"), Some(RouteBehaviour::Lambda(0)));
        assert_eq!(config.routes.get("chat"), Some(RouteBehaviour::Lambda(1)));
        assert_eq!(config.routes.get("ping"), Some(RouteBehaviour::Echo));
        assert_eq!(config.default_route, Some(RouteBehaviour::Lambda(0)));
        assert!(lambdas.route_responses.contains("send"));
        assert_eq!(lambdas.timeout, Duration::from_secs(2));
        assert_eq!(lambdas.concurrency, 1);
        let config = ServeConfig::from_args(&args(&["--integration-concurrency", "4"])).unwrap();
        assert_eq!(config.integrations.concurrency, 4);
        for edge in ["50ms", "29s"] {
            let config = ServeConfig::from_args(&args(&["--integration-timeout", edge])).unwrap();
            assert_eq!(
                config.integrations.timeout,
                humantime::parse_duration(edge).unwrap()
            );
        }

        // Without --integration the sample app stays; one route goes to a Lambda.
        let config =
            ServeConfig::from_args(&args(&["--route", "$connect=lambda:http://h:1/c"])).unwrap();
        assert_eq!(config.integrations.connect, Some(0));
        assert_eq!(config.integrations.disconnect, None);
        assert_eq!(config.routes.get("send"), Some(RouteBehaviour::EchoBody));
        assert_eq!(config.default_route, None);

        for bad in [
            &["--route", "send=lambda"][..],
            &["--route", "send=lambda:ftp://h/x"],
            &["--route", "$other=lambda:http://h/x"],
            &["--integration", "127.0.0.1:9000"],
            &["--integration-timeout", "0s"],
            &["--integration-timeout", "49ms"],
            &["--integration-timeout", "10ms"],
            &["--integration-timeout", "30s"],
            &["--integration-timeout", "60s"],
        ] {
            let result = ServeConfig::from_args(&args(bad));
            assert!(
                matches!(result, Err(crate::Error::Usage(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn default_route_none_holds_with_an_integration() {
        let url = "http://127.0.0.1:9000/2015-03-31/functions/function/invocations";
        let given = |route: &str| {
            ServeConfig::from_args(&args(&["--integration", url, "--default-route", route]))
                .unwrap()
                .default_route
        };
        assert_eq!(given("none"), None);
        assert_eq!(given("echo"), Some(RouteBehaviour::Echo));
        let config = ServeConfig::from_args(&args(&["--integration", url])).unwrap();
        assert_eq!(config.default_route, Some(RouteBehaviour::Lambda(0)));
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
    fn empty_secrets_are_refused_not_ignored() {
        for flag in ["--token", "--api-key", "--iam-key"] {
            match ServeConfig::from_args(&args(&[flag, "", "--api-key", "k1"])) {
                Err(crate::Error::Usage(message)) => {
                    assert!(
                        message.contains(flag) && message.contains("empty"),
                        "{message}"
                    )
                }
                other => panic!("{flag} '': expected a usage error, got {other:?}"),
            }
        }
        let config = ServeConfig::from_args(&args(&["--api-key", "k1"])).unwrap();
        assert_eq!(config.api_keys.len(), 1);
    }
}
