//! `wsprobe serve`'s flags lowered into the server's own configuration type.

use wsprobe_core::aws::IamKey;
use wsprobe_core::secret::Secret;
use wsprobe_serve::{
    Authorizer, IdentitySource, Integrations, LogFormat as ServeLogFormat, LogSink,
    MAX_INTEGRATION_TIMEOUT, MIN_INTEGRATION_TIMEOUT, RouteBehaviour, RouteTable,
    SelectionExpression, ServeConfig, self_signed_path,
};

use crate::Error;
use crate::cli::{DefaultRoute, LogFormat, ServeArgs};

/// The server configuration `wsprobe serve`'s flags ask for, with log lines on stdout
/// unless `--quiet`. A bad `--route`, expression, stage or size is a usage error.
pub fn serve_config(args: &ServeArgs) -> Result<ServeConfig, Error> {
    let stage = args.stage.trim_matches('/');
    if stage.is_empty() || stage.contains('/') || stage.starts_with('@') {
        return Err(Error::usage(format!(
            "--stage `{}` is not a stage name; write e.g. `--stage dev`",
            args.stage
        )));
    }
    let route_selection_expression =
        SelectionExpression::parse(&args.route_selection_expression).map_err(Error::Usage)?;
    let mut routes = RouteTable::default();
    let mut default_route = match args.default_route {
        Some(DefaultRoute::Echo) => Some(RouteBehaviour::Echo),
        Some(DefaultRoute::None) | None => None,
    };
    if !(MIN_INTEGRATION_TIMEOUT..=MAX_INTEGRATION_TIMEOUT).contains(&args.integration_timeout) {
        return Err(Error::usage(format!(
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
                .map_err(|e| Error::usage(format!("--integration: {e}")))?;
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
                        .map_err(|e| Error::usage(format!("--route `{spec}`: {e}")))?,
                ),
                None => default_integration.ok_or_else(|| {
                    Error::usage(format!(
                        "--route `{spec}`: `lambda` alone needs --integration URL; or write `{name}=lambda:URL`"
                    ))
                })?,
            };
            match name {
                "" => {
                    return Err(Error::usage(format!("--route `{spec}` has no route name")));
                }
                "$connect" => integrations.connect = Some(index),
                "$disconnect" => integrations.disconnect = Some(index),
                "$default" => default_route = Some(RouteBehaviour::Lambda(index)),
                reserved if reserved.starts_with('$') => {
                    return Err(Error::usage(format!(
                        "--route `{spec}`: route keys starting with `$` are reserved"
                    )));
                }
                name => {
                    routes.insert(name, RouteBehaviour::Lambda(index));
                }
            }
            continue;
        }
        let (name, behaviour) = RouteTable::parse_route(spec).map_err(Error::Usage)?;
        if name == "$default" {
            default_route = Some(behaviour);
        } else {
            routes.insert(name, behaviour);
        }
    }
    let authorizer = match &args.authorizer {
        Some(text) => {
            let url = Integrations::parse_url(text)
                .map_err(|e| Error::usage(format!("--authorizer: {e}")))?;
            let identity_sources = match &args.identity_source {
                Some(list) => IdentitySource::parse_list(list).map_err(Error::Usage)?,
                None => IdentitySource::default_sources(),
            };
            Some(Authorizer {
                endpoint: integrations.endpoint(url),
                identity_sources,
            })
        }
        None => None,
    };
    for name in &args.route_responses {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::usage("--route-response needs a route name"));
        }
        integrations.route_responses.insert(name.to_owned());
    }
    let max_frame_size = size_limit("--max-frame-size", args.max_frame_size)?;
    let max_message_size = size_limit("--max-message-size", args.max_message_size)?;
    if max_frame_size > max_message_size {
        return Err(Error::usage(format!(
            "--max-frame-size ({max_frame_size}) is larger than --max-message-size ({max_message_size})"
        )));
    }
    if args.idle_timeout.is_zero() || args.max_connection_duration.is_zero() {
        return Err(Error::usage(
            "--idle-timeout and --max-connection-duration must be longer than zero",
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path)
                    .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))
            };
            let config = ServeConfig::tls_from_pem(&read(cert)?, &read(key)?).map_err(|e| {
                Error::usage(format!(
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
                Some(ServeConfig::tls_self_signed(&path).map_err(Error::usage)?)
            }
            None => None,
        },
    };
    let iam_keys = non_empty("--iam-key (or WSPROBE_SERVE_IAM_KEYS)", &args.iam_keys)?
        .iter()
        .map(|key| IamKey::parse(key.expose()).map_err(Error::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    if authorizer.is_some() && !args.iam_keys.is_empty() {
        // A route has one authorization type: IAM or a Lambda authorizer.
        return Err(Error::usage(
            "--authorizer and --iam-key cannot be combined: $connect is authorized by IAM or by a Lambda authorizer, not both",
        ));
    }
    Ok(ServeConfig {
        authorizer,
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
        log_format: match args.log_format {
            LogFormat::Plain => ServeLogFormat::Plain,
            LogFormat::Json => ServeLogFormat::Json,
        },
        tls,
        integrations,
    })
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

/// An empty value is almost always an unset shell variable (`--token "$TOKEN"`): ignoring
/// it would quietly run an open server, and accepting it would match an empty header, so
/// it is refused.
fn non_empty(flag: &str, secrets: &[Secret]) -> Result<Vec<Secret>, Error> {
    if secrets.iter().any(Secret::is_empty) {
        return Err(Error::usage(format!(
            "{flag} was given an empty value (is its variable unset?); give a value or leave \
             the flag out"
        )));
    }
    Ok(secrets.to_vec())
}

fn size_limit(flag: &str, value: u64) -> Result<usize, Error> {
    match usize::try_from(value) {
        Ok(0) => Err(Error::usage(format!("{flag} must be larger than 0"))),
        Ok(size) => Ok(size),
        Err(_) => Err(Error::usage(format!("{flag} {value} is too large"))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["wsprobe", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv) {
            Ok(cli) => match cli.command {
                Command::Serve(args) => args,
                _ => panic!("not serve"),
            },
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_match_api_gateway() {
        let config = serve_config(&args(&["--quiet"])).unwrap();
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
        let config = serve_config(&args(&[
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
            let result = serve_config(&args(bad));
            assert!(
                matches!(result, Err(Error::Usage(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn lambda_routes_and_the_default_integration() {
        let url = "http://127.0.0.1:9000/2015-03-31/functions/function/invocations";
        let config = serve_config(&args(&[
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
        let config = serve_config(&args(&["--integration-concurrency", "4"])).unwrap();
        assert_eq!(config.integrations.concurrency, 4);
        for edge in ["50ms", "29s"] {
            let config = serve_config(&args(&["--integration-timeout", edge])).unwrap();
            assert_eq!(
                config.integrations.timeout,
                humantime::parse_duration(edge).unwrap()
            );
        }

        // Without --integration the sample app stays; one route goes to a Lambda.
        let config = serve_config(&args(&["--route", "$connect=lambda:http://h:1/c"])).unwrap();
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
            let result = serve_config(&args(bad));
            assert!(
                matches!(result, Err(Error::Usage(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn default_route_none_holds_with_an_integration() {
        let url = "http://127.0.0.1:9000/2015-03-31/functions/function/invocations";
        let given = |route: &str| {
            serve_config(&args(&["--integration", url, "--default-route", route]))
                .unwrap()
                .default_route
        };
        assert_eq!(given("none"), None);
        assert_eq!(given("echo"), Some(RouteBehaviour::Echo));
        let config = serve_config(&args(&["--integration", url])).unwrap();
        assert_eq!(config.default_route, Some(RouteBehaviour::Lambda(0)));
    }

    #[test]
    fn authorizer_flags() {
        let url = "http://127.0.0.1:9001/2015-03-31/functions/function/invocations";
        let config = serve_config(&args(&["--authorizer", url])).unwrap();
        let authorizer = config.authorizer.unwrap();
        assert_eq!(
            config.integrations.endpoints[authorizer.endpoint].as_str(),
            url
        );
        assert_eq!(
            authorizer.identity_sources,
            [IdentitySource::Header("Authorization".into())]
        );
        // No integration for $connect: the sample app stays.
        assert_eq!(config.integrations.connect, None);
        assert_eq!(config.routes.get("send"), Some(RouteBehaviour::EchoBody));
        let config = serve_config(&args(&[
            "--authorizer",
            url,
            "--identity-source",
            "route.request.querystring.token,route.request.header.X-Key",
        ]))
        .unwrap();
        assert_eq!(config.authorizer.unwrap().identity_sources.len(), 2);
        for bad in [
            &["--authorizer", "127.0.0.1:9001"][..],
            &["--authorizer", url, "--identity-source", "header.Auth"],
            &["--authorizer", url, "--iam-key", "AKID:s"],
        ] {
            let result = serve_config(&args(bad));
            assert!(
                matches!(result, Err(Error::Usage(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn iam_keys_from_flags() {
        let config =
            serve_config(&args(&["--iam-key", "AKID1:s1", "--iam-key", "AKID2:s:2"])).unwrap();
        assert_eq!(config.iam_keys.len(), 2);
        assert_eq!(config.iam_keys[1].access_key_id, "AKID2");
        assert_eq!(config.iam_keys[1].secret.expose(), "s:2");
        assert_eq!(config.secrets().count(), 2);
        match serve_config(&args(&["--iam-key", "no-colon-secret"])) {
            Err(Error::Usage(message)) => {
                assert!(!message.contains("no-colon-secret"), "{message}")
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn empty_secrets_are_refused_not_ignored() {
        for flag in ["--token", "--api-key", "--iam-key"] {
            match serve_config(&args(&[flag, "", "--api-key", "k1"])) {
                Err(Error::Usage(message)) => {
                    assert!(
                        message.contains(flag) && message.contains("empty"),
                        "{message}"
                    )
                }
                other => panic!("{flag} '': expected a usage error, got {other:?}"),
            }
        }
        let config = serve_config(&args(&["--api-key", "k1"])).unwrap();
        assert_eq!(config.api_keys.len(), 1);
    }
}
