//! The one lowering of the command line into the core's types: connection flags ⊕ the
//! stage profile ⊕ the core's defaults → [`ConnectOptions`]. Precedence is plain because
//! both the flags and the profile are partial (absent = not given): a flag wins, then the
//! profile, then the default written once in `wsprobe_core::options`.

mod serve;

pub use serve::serve_config;

use std::io::Write as _;

use colored::Colorize;
use wsprobe_core::client::ClientConfig;
use wsprobe_core::message::RouteFields;
use wsprobe_core::options::{
    ConnectOptions, DEFAULT_BODY_FIELD, DEFAULT_CONNECT_TIMEOUT, DEFAULT_ECHO, DEFAULT_ROUTE_FIELD,
    EchoPolicy, InboxLimits, ProxyChoice, SessionOptions, SigningChoice, TlsFiles,
};
use wsprobe_core::reconnect::{ReconnectPolicy, ReconnectWhen};
use wsprobe_core::secret::Secret;
use wsprobe_core::session::KeepAlive;
use wsprobe_core::values::Header;

use super::profile::{self, StageProfile};
use super::{ConnectionArgs, EchoFlag, InboxArgs, ReconnectFlag, SessionArgs};
use crate::Error;

/// Connection flags lowered: the URL (from the command line or the stage), the options,
/// and the stage profile used, if any (for what front-ends key on it, like REPL history).
#[derive(Debug)]
pub struct Lowered {
    /// The URL to connect to: the one given, else the stage's.
    pub url: Option<String>,
    /// The connection options.
    pub options: ConnectOptions,
    /// The stage profile that filled what the flags left out.
    pub stage: Option<StageProfile>,
}

/// Lowers the connection flags and `url` (as given, if at all), reading the stage profile
/// when `--stage` names one. A stage without a URL, when none was given, is an error.
pub fn connection(args: &ConnectionArgs, url: Option<String>) -> Result<Lowered, Error> {
    let stage = match &args.stage {
        Some(name) => Some(profile::read_stage(name, args.config_file.as_deref())?),
        None => None,
    };
    let lowered = merge(args, url, stage)?;
    if let Some(auth) = &args.auth
        && let Some(user) = wscat_credentials_user(auth.expose())
    {
        let _ = writeln!(
            std::io::stderr(),
            "{} --auth {user}:… is taken as wscat's USER:PASS and sent as \
             `Authorization: Basic …` (a value with a scheme, e.g. 'Bearer TOKEN', is sent as is)",
            "note:".bold()
        );
    }
    if let (None, Some(stage)) = (&lowered.url, &lowered.stage) {
        return Err(Error::usage(format!(
            "{}: stage `{}` has no url, and none was given; add `url = \"wss://…\"` to [stages.{}]",
            stage.file.display(),
            stage.name,
            stage.name
        )));
    }
    Ok(lowered)
}

/// `--inbox-frames` and `--inbox-bytes` over the core's defaults.
pub fn inbox(args: &InboxArgs) -> Result<InboxLimits, Error> {
    let defaults = InboxLimits::default();
    let frames = match args.inbox_frames {
        Some(n) => usize::try_from(n).map_err(|_| Error::usage("--inbox-frames is too large"))?,
        None => defaults.frames,
    };
    let bytes = match args.inbox_bytes {
        Some(0) => return Err(Error::usage("--inbox-bytes must be larger than 0")),
        Some(n) => usize::try_from(n).map_err(|_| Error::usage("--inbox-bytes is too large"))?,
        None => defaults.bytes,
    };
    Ok(InboxLimits { frames, bytes })
}

/// `--keepalive`, `--keepalive-message`, `--reconnect`, `--reconnect-max` and
/// `--on-connect` over the core's defaults. Every `--on-connect` line is parsed here, so
/// a typo is a usage error before anything connects.
pub fn session(args: &SessionArgs) -> Result<SessionOptions, Error> {
    let keepalive = match (args.keepalive, &args.keepalive_message) {
        (Some(every), _) if every.is_zero() => {
            return Err(Error::usage("--keepalive must be longer than 0s"));
        }
        (Some(every), message) => Some(KeepAlive {
            every,
            message: message.clone(),
        }),
        (None, Some(_)) => {
            return Err(Error::usage(
                "--keepalive-message needs --keepalive DURATION: how long the connection may stay silent",
            ));
        }
        (None, None) => None,
    };
    let reconnect = match (args.reconnect, args.reconnect_max) {
        (Some(flag), max) => Some(ReconnectPolicy {
            when: match flag {
                ReconnectFlag::GoingAway => ReconnectWhen::GoingAway,
                ReconnectFlag::Always => ReconnectWhen::Always,
            },
            max_attempts: max.unwrap_or(ReconnectPolicy::default().max_attempts),
        }),
        (None, Some(_)) => {
            return Err(Error::usage("--reconnect-max needs --reconnect"));
        }
        (None, None) => None,
    };
    let mut errors = Vec::new();
    for line in &args.on_connect {
        if let Err(error) = wsprobe_core::command::engine::OnConnect::parse(line) {
            errors.push(format!("--on-connect: {error}"));
        }
    }
    if !errors.is_empty() {
        return Err(Error::usage(errors.join("\n")));
    }
    Ok(SessionOptions {
        keepalive,
        reconnect,
        on_connect: args.on_connect.clone(),
    })
}

/// [`session`] for `load`, which refuses `--on-connect`: a load connection sends only
/// pings it can match with their echoes, and the answers of other lines (a subscription's
/// acknowledgement, pushed messages) could not be told from damaged echoes, so they would
/// be counted as errors and skew the run.
pub fn load_session(args: &SessionArgs) -> Result<SessionOptions, Error> {
    if let Some(line) = args.on_connect.first() {
        return Err(Error::usage(format!(
            "--on-connect `{line}`: `load` sends only pings it matches with their echoes, so \
             it cannot run --on-connect lines (their answers would be counted as corrupted \
             echoes); keep them for `connect` and `run`"
        )));
    }
    session(args)
}

/// [`connection`] for `manage`, refusing the options that do nothing for one HTTP call.
pub fn manage_connection(args: &ConnectionArgs, url: Option<String>) -> Result<Lowered, Error> {
    let useless = [
        (!args.subprotocols.is_empty(), "-s/--subprotocol"),
        (args.origin.is_some(), "-o/--origin"),
        (args.route_field.is_some(), "--route-field"),
        (args.body_field.is_some(), "--body-field"),
        (args.echo.is_some(), "--echo"),
    ];
    if let Some((_, flag)) = useless.iter().find(|(given, _)| *given) {
        return Err(Error::usage(format!(
            "{flag} does nothing for `manage`, which makes one HTTP call to @connections"
        )));
    }
    connection(args, url)
}

/// Flags first, then the profile, then the defaults.
fn merge(
    args: &ConnectionArgs,
    url: Option<String>,
    stage: Option<StageProfile>,
) -> Result<Lowered, Error> {
    let empty = StageProfile::default();
    let profile = stage.as_ref().unwrap_or(&empty);
    // `-H` replaces the profile's headers of the same name and adds to the others.
    let mut headers: Vec<Header> = profile
        .headers
        .iter()
        .filter(|h| {
            !args
                .headers
                .iter()
                .any(|given| given.name.eq_ignore_ascii_case(&h.name))
        })
        .cloned()
        .collect();
    headers.extend(args.headers.iter().cloned());
    let subprotocols = if args.subprotocols.is_empty() {
        profile.subprotocols.clone()
    } else {
        args.subprotocols.clone()
    };
    let client_identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => profile.client_identity.clone(),
    };
    let proxy = if args.no_proxy {
        ProxyChoice::Direct
    } else {
        match args.proxy.clone().or_else(|| profile.proxy.clone()) {
            // `--proxy ''` connects directly, as curl's `-x ""` does.
            Some(url) if url.expose().trim().is_empty() => ProxyChoice::Direct,
            Some(url) => ProxyChoice::Through(url),
            None => ProxyChoice::FromEnvironment,
        }
    };
    let auth = match &args.auth {
        Some(given) => Some(basic_if_credentials(given)),
        None => profile.auth.clone(),
    };
    let signing = signing(args, profile, auth.is_some() || has_authorization(&headers))?;
    let connect_timeout = args
        .connect_timeout
        .or(profile.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if connect_timeout.is_zero() {
        return Err(Error::usage("--connect-timeout must be longer than 0s"));
    }
    let echo = match args.echo {
        Some(EchoFlag::Body) => EchoPolicy::Body,
        Some(EchoFlag::Full) => EchoPolicy::Full,
        Some(EchoFlag::Off) => EchoPolicy::Off,
        None => profile.echo.unwrap_or(DEFAULT_ECHO),
    };
    let options = ConnectOptions {
        headers,
        auth,
        api_key: args.api_key.clone().or_else(|| profile.api_key.clone()),
        subprotocols,
        origin: args.origin.clone().or_else(|| profile.origin.clone()),
        connect_timeout,
        tls: TlsFiles {
            cacert: args.cacert.clone().or_else(|| profile.cacert.clone()),
            client_identity,
            insecure: args.insecure || profile.insecure,
        },
        proxy,
        signing,
        fields: RouteFields {
            route_field: first(&args.route_field, &profile.route_field, DEFAULT_ROUTE_FIELD),
            body_field: first(&args.body_field, &profile.body_field, DEFAULT_BODY_FIELD),
        },
        echo,
        // `connect` and `run` set these from their own flags (`lower::inbox`,
        // `lower::session`).
        inbox: InboxLimits::default(),
        session: SessionOptions::default(),
    };
    Ok(Lowered {
        url: url.or_else(|| profile.url.clone()),
        options,
        stage,
    })
}

/// The user of an `--auth` value spelled as wscat's `USER:PASS`: no space, one colon,
/// a user before it.
fn wscat_credentials_user(auth: &str) -> Option<&str> {
    let (user, pass) = auth.split_once(':')?;
    let plain = !auth.chars().any(char::is_whitespace) && !pass.contains(':');
    (plain && !user.is_empty()).then_some(user)
}

/// `--auth USER:PASS` as Basic credentials (what wscat sends); anything else as given.
fn basic_if_credentials(auth: &Secret) -> Secret {
    use base64::Engine as _;
    if wscat_credentials_user(auth.expose()).is_none() {
        return auth.clone();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(auth.expose());
    Secret::new(format!("Basic {encoded}"))
}

/// The flag's value, else the profile's, else the default.
fn first(flag: &Option<String>, profile: &Option<String>, default: &str) -> String {
    flag.as_deref()
        .or(profile.as_deref())
        .unwrap_or(default)
        .to_owned()
}

fn has_authorization(headers: &[Header]) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("authorization"))
}

/// SigV4 signing as asked: `--sigv4`/`--sigv4-query` or the profile's `sigv4`/`sigv4_query`.
/// `--region`/`--profile` without signing, and header signing beside an `Authorization`
/// of the user's (which the signature would replace), are usage errors.
fn signing(
    args: &ConnectionArgs,
    profile: &StageProfile,
    authorization_given: bool,
) -> Result<Option<SigningChoice>, Error> {
    let headers = args.sigv4 || profile.sigv4 == Some(true);
    let query = args.sigv4_query || profile.sigv4_query == Some(true);
    let region = args.region.clone().or_else(|| profile.region.clone());
    let aws_profile = args.profile.clone().or_else(|| profile.aws_profile.clone());
    if !headers && !query {
        if args.region.is_some() || args.profile.is_some() {
            return Err(Error::usage(
                "--region and --profile choose how to sign; add --sigv4 (or --sigv4-query)",
            ));
        }
        return Ok(None);
    }
    if !query && authorization_given {
        return Err(Error::usage(
            "--sigv4 puts the signature in the Authorization header, which --auth (or WSPROBE_AUTH, \
             or -H Authorization) also sets; use --sigv4-query to send both",
        ));
    }
    Ok(Some(SigningChoice {
        query,
        region,
        profile: aws_profile,
    }))
}

/// The client configuration of `options`, with its warnings printed to stderr.
pub fn client_config(options: &ConnectOptions) -> Result<ClientConfig, Error> {
    let (config, warnings) = ClientConfig::from_options(options)?;
    let mut stderr = std::io::stderr().lock();
    for warning in warnings {
        let _ = writeln!(
            stderr,
            "{} {}",
            "warning:".yellow().bold(),
            warning.to_string().yellow()
        );
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(flags: &[&str]) -> ConnectionArgs {
        let mut argv = vec!["wsprobe", "connect"];
        argv.extend_from_slice(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Connect(connect) => connect.connection,
            _ => panic!("not connect"),
        }
    }

    fn stage() -> StageProfile {
        StageProfile {
            name: "dev".into(),
            url: Some("wss://abc123.execute-api.eu-west-1.amazonaws.com/dev".into()),
            auth: Some(wsprobe_core::secret::Secret::new("Bearer t0k")),
            api_key: Some(wsprobe_core::secret::Secret::new("k1")),
            headers: vec![
                Header {
                    name: "X-Trace".into(),
                    value: "on".into(),
                },
                Header {
                    name: "X-Tenant".into(),
                    value: "acme".into(),
                },
            ],
            connect_timeout: Some(Duration::from_secs(3)),
            cacert: Some(PathBuf::from("conf/certs/ca.pem")),
            route_field: Some("message".into()),
            echo: Some(EchoPolicy::Full),
            ..StageProfile::default()
        }
    }

    #[test]
    fn flags_win_over_the_profile_even_when_equal_to_the_defaults() {
        let flags = args(&[
            "--api-key",
            "flag-key",
            "-H",
            "x-tenant: other",
            "--route-field",
            "action",
            "--connect-timeout",
            "10s",
        ]);
        let lowered = merge(&flags, Some("ws://127.0.0.1:9/dev".into()), Some(stage())).unwrap();
        let options = lowered.options;
        assert_eq!(lowered.url.as_deref(), Some("ws://127.0.0.1:9/dev"));
        assert_eq!(options.auth.unwrap().expose(), "Bearer t0k");
        assert_eq!(options.api_key.unwrap().expose(), "flag-key");
        let headers: Vec<String> = options
            .headers
            .iter()
            .map(|h| format!("{}: {}", h.name, h.value))
            .collect();
        assert_eq!(headers, ["X-Trace: on", "x-tenant: other"]);
        assert_eq!(options.fields.route_field, "action");
        assert_eq!(options.connect_timeout, Duration::from_secs(10));
        // Not given: the profile's.
        assert_eq!(options.echo, EchoPolicy::Full);
    }

    #[test]
    fn the_profile_fills_what_the_flags_leave_out_and_defaults_the_rest() {
        let lowered = merge(&args(&[]), None, Some(stage())).unwrap();
        let options = lowered.options;
        assert_eq!(
            lowered.url.as_deref(),
            Some("wss://abc123.execute-api.eu-west-1.amazonaws.com/dev")
        );
        assert_eq!(options.fields.route_field, "message");
        assert_eq!(options.fields.body_field, DEFAULT_BODY_FIELD);
        assert_eq!(options.connect_timeout, Duration::from_secs(3));
        assert_eq!(options.tls.cacert, Some(PathBuf::from("conf/certs/ca.pem")));

        let bare = merge(&args(&[]), None, None).unwrap().options;
        assert_eq!(bare.fields, RouteFields::default());
        assert_eq!(bare.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(bare.echo, DEFAULT_ECHO);
        assert!(matches!(bare.proxy, ProxyChoice::FromEnvironment));
        assert!(bare.signing.is_none());
    }

    #[test]
    fn wscat_user_pass_becomes_basic_and_a_scheme_is_kept() {
        let auth = |flag: &str| {
            merge(&args(&["--auth", flag]), None, None)
                .unwrap()
                .options
                .auth
                .unwrap()
                .expose()
                .to_owned()
        };
        assert_eq!(auth("alice:s3cret"), "Basic YWxpY2U6czNjcmV0");
        assert_eq!(auth("Bearer x:y"), "Bearer x:y");
        assert_eq!(auth("a:b:c"), "a:b:c");
        assert_eq!(auth(":x"), ":x");
        assert_eq!(auth("token"), "token");
    }

    #[test]
    fn signing_and_proxy_choices() {
        let signed = merge(
            &args(&["--sigv4-query", "--region", "eu-west-1"]),
            None,
            None,
        )
        .unwrap()
        .options;
        assert_eq!(
            signed.signing,
            Some(SigningChoice {
                query: true,
                region: Some("eu-west-1".into()),
                profile: None
            })
        );
        for bad in [
            &["--region", "eu-west-1"][..],
            &["--sigv4", "--auth", "Bearer x"],
            &["--sigv4", "-H", "Authorization: x"],
            &["--connect-timeout", "0s"],
        ] {
            assert!(
                matches!(merge(&args(bad), None, None), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
        let direct = merge(&args(&["--proxy", ""]), None, None).unwrap().options;
        assert!(matches!(direct.proxy, ProxyChoice::Direct));
        let direct = merge(&args(&["--no-proxy"]), None, None).unwrap().options;
        assert!(matches!(direct.proxy, ProxyChoice::Direct));
        let through = merge(&args(&["--proxy", "http://127.0.0.1:3128"]), None, None)
            .unwrap()
            .options;
        assert!(matches!(through.proxy, ProxyChoice::Through(_)));
    }

    fn session_of(flags: &[&str]) -> Result<SessionOptions, Error> {
        let mut argv = vec!["wsprobe", "connect", "ws://h/dev"];
        argv.extend_from_slice(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Connect(connect) => session(&connect.session),
            _ => panic!("not connect"),
        }
    }

    #[test]
    fn session_flags_lower_to_the_core_types() {
        let none = session_of(&[]).unwrap();
        assert_eq!(none, SessionOptions::default());
        let all = session_of(&[
            "--keepalive",
            "5m",
            "--keepalive-message",
            "ka",
            "--reconnect",
            "--reconnect-max",
            "3",
            "--on-connect",
            "/send subscribe {\"topic\":\"a\"}",
            "--on-connect",
            "hello",
        ])
        .unwrap();
        assert_eq!(
            all.keepalive,
            Some(KeepAlive {
                every: Duration::from_secs(300),
                message: Some("ka".into())
            })
        );
        assert_eq!(
            all.reconnect,
            Some(ReconnectPolicy {
                when: ReconnectWhen::GoingAway,
                max_attempts: 3
            })
        );
        assert_eq!(all.on_connect.len(), 2);
        let always = session_of(&["--reconnect", "always"]).unwrap();
        assert_eq!(
            always
                .reconnect
                .map(|policy| (policy.when, policy.max_attempts)),
            Some((
                ReconnectWhen::Always,
                wsprobe_core::options::DEFAULT_RECONNECT_MAX
            ))
        );
    }

    #[test]
    fn session_flags_that_cannot_work_are_usage_errors() {
        assert!(session_of(&["--keepalive", "0s"]).is_err());
        let error = session_of(&["--on-connect", "/sned x"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--on-connect") && error.contains("sned"),
            "{error}"
        );
        assert!(session_of(&["--on-connect", "/quit"]).is_err());
        assert!(session_of(&["--on-connect", ""]).is_err());
        // clap: the value of --reconnect, and the flags that need another.
        for flags in [
            &["--reconnect", "sometimes"][..],
            &["--reconnect-max", "3"][..],
            &["--keepalive-message", "ka"][..],
            &["--reconnect", "--reconnect-max", "0"][..],
        ] {
            let mut argv = vec!["wsprobe", "connect", "ws://h/dev"];
            argv.extend_from_slice(flags);
            assert!(Cli::try_parse_from(argv).is_err(), "{flags:?}");
        }
    }
}
