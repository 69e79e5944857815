//! The command line: clap definitions for every subcommand, and the connection flags
//! shared by `connect`, `run`, `load` and `manage` (one struct, flattened into each).
//! Nothing here has a default that a stage profile could set: those flags are `Option`s,
//! and `lower.rs` fills them from the profile, then from the core's defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use wsprobe_core::secret::Secret;
use wsprobe_core::values::{self, Header};

const ABOUT: &str = "A WebSocket tester for API Gateway stages and other WebSocket APIs";

const EXAMPLES: &str = "\
Examples:
  wsprobe connect                       # REPL against the bundled backend
  wsprobe -c ws://127.0.0.1:8080/dev    # wscat's spelling of connect URL
  wsprobe connect wss://abc123.execute-api.eu-west-1.amazonaws.com/dev \\
      --auth 'Bearer xyz' --api-key \"$API_KEY\"
  wsprobe run scripts/echo.wsp --report junit=report.xml
  wsprobe load ws://127.0.0.1:8080/dev -c 100 --rate 1000/s -d 30s
  wsprobe serve --api-key secret-key --token xyz

Exit codes: 0 success, 1 a check failed, 2 usage or script error,
3 could not connect, 130 interrupted.";

/// The command line with wscat's `wsprobe -c URL …` turned into `wsprobe connect -c URL …`:
/// when the first argument after the global flags is `-c` or `--connect`, `connect` is
/// put before it.
pub fn with_wscat_spelling(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let first = args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, arg)| !matches!(arg.to_str(), Some("--no-color" | "--show-secrets")));
    if let Some((at, arg)) = first {
        let arg = arg.to_string_lossy();
        let wscat = arg == "--connect"
            || arg.starts_with("--connect=")
            || (arg.starts_with("-c") && !arg.starts_with("--"));
        if wscat {
            args.insert(at, "connect".into());
        }
    }
    args
}

/// The whole command line.
#[derive(Debug, Parser)]
#[command(name = "wsprobe", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Never colour output
    ///
    /// Colour is also off when NO_COLOR is set or output is not a terminal.
    #[arg(long, global = true, help_heading = "Output")]
    pub no_color: bool,

    /// Print tokens, API keys and other secrets instead of redacting them
    #[arg(long, global = true, help_heading = "Output", hide_short_help = true)]
    pub(crate) show_secrets: bool,
}

/// The jobs wsprobe does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interactive REPL: send text or route-tagged JSON, see what arrives, check echoes
    Connect(ConnectArgs),
    /// Run scripts of sends and expectations (for CI), with JUnit and JSON reports
    Run(RunArgs),
    /// Load-ping a stage: many connections, a target rate, exact latency percentiles
    Load(Box<LoadArgs>),
    /// Run the reference backend: an API Gateway WebSocket stage with the sample echo app
    Serve(ServeArgs),
    /// One @connections call: post data to a connection, get its details, or delete it
    Manage(ManageArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// What an echo of a route-tagged send looks like (`--echo`); lowered into
/// [`wsprobe_core::options::EchoPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EchoFlag {
    /// The value of the body field, as JSON (the sample echo app's `send` route)
    Body,
    /// The whole message, as sent
    Full,
    /// No echo is expected
    Off,
}

/// Options for opening a connection, shared by `connect`, `run`, `load` and `manage`,
/// shown under the headings Connection, TLS and AWS. `-h` shows the common ones; the rest
/// (`hide_short_help`) only in `--help`.
#[derive(Clone, Debug, Args)]
pub struct ConnectionArgs {
    /// Extra handshake header, repeatable
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = values::parse_header, help_heading = "Connection")]
    pub(crate) headers: Vec<Header>,

    /// Authorization value: 'Bearer xyz' or USER:PASS
    ///
    /// A value with a scheme is sent as given; wscat's USER:PASS (no space, one colon) is
    /// sent as Basic credentials, with a note on stderr.
    #[arg(
        long,
        value_name = "VALUE",
        env = "WSPROBE_AUTH",
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub(crate) auth: Option<Secret>,

    /// X-API-Key header value
    #[arg(
        long,
        value_name = "KEY",
        env = "WSPROBE_API_KEY",
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub(crate) api_key: Option<Secret>,

    /// Sec-WebSocket-Protocol to offer, repeatable
    #[arg(
        short = 's',
        long = "subprotocol",
        value_name = "PROTOCOL",
        help_heading = "Connection"
    )]
    pub(crate) subprotocols: Vec<String>,

    /// Origin header
    #[arg(
        short = 'o',
        long,
        value_name = "URL",
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) origin: Option<String>,

    /// How long the TCP connect, TLS and WebSocket handshake may take [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = values::parse_duration, help_heading = "Connection", hide_short_help = true)]
    pub(crate) connect_timeout: Option<Duration>,

    /// PEM certificates to trust: a CA, or the server's own self-signed one
    ///
    /// Trusted besides the platform's roots. A self-signed server certificate listed here
    /// is trusted even when marked CA:TRUE; its name and dates are still checked.
    #[arg(long, value_name = "FILE", alias = "ca", help_heading = "TLS")]
    pub(crate) cacert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (with --key)
    #[arg(
        long,
        value_name = "FILE",
        requires = "key",
        help_heading = "TLS",
        hide_short_help = true
    )]
    pub(crate) cert: Option<PathBuf>,

    /// PEM private key of the client certificate (with --cert)
    #[arg(
        long,
        value_name = "FILE",
        requires = "cert",
        help_heading = "TLS",
        hide_short_help = true
    )]
    pub(crate) key: Option<PathBuf>,

    /// Do not verify the server's TLS certificate (dangerous; prints a warning)
    #[arg(short = 'k', long, help_heading = "TLS")]
    pub(crate) insecure: bool,

    /// JSON field that carries the route of a route-tagged send [default: action]
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) route_field: Option<String>,

    /// JSON field that carries the payload of a route-tagged send [default: body]
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) body_field: Option<String>,

    /// What the echo of a route-tagged send looks like [default: body]
    #[arg(
        long,
        value_name = "POLICY",
        value_enum,
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) echo: Option<EchoFlag>,

    /// HTTP CONNECT proxy: http://HOST:PORT or http://USER:PASS@HOST:PORT
    ///
    /// Used for every connection, loopback included; overrides HTTPS_PROXY, HTTP_PROXY,
    /// ALL_PROXY and NO_PROXY. '' connects directly.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "no_proxy",
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) proxy: Option<Secret>,

    /// Connect directly, ignoring the proxy environment variables
    #[arg(long, help_heading = "Connection", hide_short_help = true)]
    pub(crate) no_proxy: bool,

    /// Use a stage of wsprobe.toml (flags win)
    #[arg(
        short = 'S',
        long,
        value_name = "NAME",
        env = "WSPROBE_STAGE",
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub stage: Option<String>,

    /// The stage profile file
    ///
    /// Default: ./wsprobe.toml, else wsprobe/wsprobe.toml in the user's config directory.
    #[arg(
        long = "config",
        value_name = "FILE",
        env = "WSPROBE_CONFIG",
        hide_env_values = true,
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) config_file: Option<PathBuf>,

    /// Sign with AWS SigV4 (execute-api), as IAM-protected stages require
    ///
    /// Signs the handshake, and the @connections calls.
    #[arg(long, help_heading = "AWS")]
    pub(crate) sigv4: bool,

    /// Sign with a presigned URL (SigV4 in the query string) instead of headers
    #[arg(long, help_heading = "AWS", hide_short_help = true)]
    pub(crate) sigv4_query: bool,

    /// AWS region to sign for
    ///
    /// Default: from an execute-api host, AWS_REGION, or the profile.
    #[arg(
        long,
        value_name = "REGION",
        help_heading = "AWS",
        hide_short_help = true
    )]
    pub(crate) region: Option<String>,

    /// AWS profile to sign with (default: AWS_PROFILE, then `default`)
    ///
    /// A profile of ~/.aws/credentials and ~/.aws/config.
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "AWS",
        hide_short_help = true
    )]
    pub(crate) profile: Option<String>,
}

/// `wsprobe connect`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  wsprobe connect                  # starts the bundled backend, connects to it
  wsprobe connect ws://127.0.0.1:8080/dev --auth 'Bearer xyz' --api-key k1
  wsprobe connect URL -x '/send send \"Hello World!\"' -w 1s
  echo hello | wsprobe connect URL # pipe mode: one message a line

At the prompt: a plain line is sent as a text frame; /help lists the commands.")]
pub struct ConnectArgs {
    /// ws:// or wss:// URL; without one, the bundled backend is started on a free port
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// The URL, as wscat takes it (`-c URL`)
    #[arg(
        short = 'c',
        long = "connect",
        value_name = "URL",
        conflicts_with = "url"
    )]
    pub(crate) connect_url: Option<String>,

    /// wscat's -n: do not verify the server's TLS certificate, as -k
    #[arg(short = 'n', long = "no-check", hide_short_help = true)]
    pub(crate) no_check: bool,

    /// Accepted for wscat compatibility: slash commands are always on
    #[arg(long = "slash", hide_short_help = true)]
    pub(crate) _slash: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub inbox: InboxArgs,

    #[command(flatten)]
    pub session: SessionArgs,

    /// Run this command (or send this text), repeatable; then exit
    #[arg(short = 'x', long = "execute", value_name = "COMMAND")]
    pub(crate) execute: Vec<String>,

    /// After -x or piped input: how long to wait for messages (-1: stay connected)
    ///
    /// A duration (500ms, 2s) or seconds without a unit, as wscat takes them. 0 leaves as
    /// soon as the echo checks settle; -1 stays connected until the server closes or Ctrl-C.
    #[arg(short = 'w', long = "wait", value_name = "DURATION", default_value = "2s", value_parser = parse_linger, allow_negative_numbers = true)]
    pub(crate) wait: Linger,

    /// How long an echo check waits for the echo
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = values::parse_duration, hide_short_help = true)]
    pub(crate) echo_timeout: Duration,

    /// Show control frames (ping, pong, close)
    #[arg(short = 'P', long, alias = "show-ping-pong", help_heading = "Output")]
    pub(crate) show_control: bool,

    /// Prefix each message with a timestamp
    #[arg(short = 't', long, help_heading = "Output")]
    pub(crate) timestamps: bool,

    /// Pretty-print JSON messages
    #[arg(long, help_heading = "Output")]
    pub(crate) pretty: bool,

    /// History file
    ///
    /// Default: wsprobe/history in the user's data directory; with --stage NAME,
    /// wsprobe/history-NAME.
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub(crate) history_file: Option<PathBuf>,

    /// Write a transcript: one JSON line per event (frames, handshake, close), secrets redacted
    ///
    /// Each line has `ts` (RFC 3339, microseconds), `kind`, `conn` and, for traffic, `dir`
    /// (in/out). The schema is in docs/transcript.md.
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Output",
        hide_short_help = true
    )]
    pub(crate) log: Option<PathBuf>,

    /// Record the session as a script that `wsprobe run FILE --url URL` replays
    ///
    /// Each line typed becomes a command, followed by an `expect` for what answered it;
    /// credentials become ${WSPROBE_AUTH} and ${WSPROBE_API_KEY}. Written when the session ends.
    #[arg(
        long,
        value_name = "FILE.wsp",
        help_heading = "Output",
        hide_short_help = true
    )]
    pub(crate) record: Option<PathBuf>,
}

/// Sessions that last: keepalive, reconnect, and the lines re-run after every open
/// (`connect` and `run`; one struct, so `load` can flatten it too). Shown in `--help` only.
#[derive(Clone, Debug, Default, Args)]
pub struct SessionArgs {
    /// Send a ping after every DURATION without sending anything
    ///
    /// "Without sending": nothing sent by us, keepalives included. API Gateway's idle timer
    /// (10 minutes) counts messages and reportedly ignores pings: use --keepalive-message
    /// there. Answers to keepalives are counted, not shown (`/keepalive` shows the counts).
    #[arg(long, value_name = "DURATION", value_parser = values::parse_duration, help_heading = "Session", hide_short_help = true)]
    pub(crate) keepalive: Option<Duration>,

    /// With --keepalive: send this text frame instead of a ping
    #[arg(
        long,
        value_name = "TEXT",
        requires = "keepalive",
        help_heading = "Session",
        hide_short_help = true
    )]
    pub(crate) keepalive_message: Option<String>,

    /// Reopen the connection when the server ends it with 1001 or 1006 (`always`: any close)
    ///
    /// Re-runs the whole handshake (same headers, a fresh SigV4 signature) with exponential
    /// backoff and jitter: the first retry within 250ms, then up to 30s between attempts.
    /// A refused handshake (401, 403) stops it (exit 3).
    #[arg(long, value_name = "always", num_args = 0..=1, default_missing_value = "going-away", value_parser = parse_reconnect, help_heading = "Session", hide_short_help = true)]
    pub(crate) reconnect: Option<ReconnectFlag>,

    /// With --reconnect: consecutive failed attempts before giving up [default: 10]
    #[arg(long, value_name = "N", requires = "reconnect", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Session", hide_short_help = true)]
    pub(crate) reconnect_max: Option<u32>,

    /// Run this line after every open, reconnects included (repeatable)
    ///
    /// A line as typed at the prompt: `/send subscribe {"topic":"a"}`, or text to send.
    #[arg(
        long,
        value_name = "LINE",
        help_heading = "Session",
        hide_short_help = true
    )]
    pub(crate) on_connect: Vec<String>,
}

/// Which endings `--reconnect` reopens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReconnectFlag {
    /// 1001 (going away) and 1006 (dropped): bare `--reconnect`.
    GoingAway,
    /// Any close by the server.
    Always,
}

/// `--reconnect`'s optional value. Its one value is `always`: anything else is most likely
/// the URL written after a bare `--reconnect`, and the message says so.
fn parse_reconnect(text: &str) -> Result<ReconnectFlag, String> {
    match text {
        "always" => Ok(ReconnectFlag::Always),
        "going-away" => Ok(ReconnectFlag::GoingAway),
        other => Err(format!(
            "`{other}` is not `always`; a bare --reconnect takes the next word as its value, \
             so put the URL before it or another option after it"
        )),
    }
}

/// How much of what arrives a session keeps for later `expect`s (`connect` and `run`).
#[derive(Debug, Default, Args)]
pub struct InboxArgs {
    /// Unconsumed messages kept per connection; beyond it the oldest are dropped [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) inbox_frames: Option<u64>,

    /// Unconsumed bytes kept per connection, and the largest message accepted [default: 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = values::parse_size)]
    pub(crate) inbox_bytes: Option<u64>,
}

/// How long `connect -x` or a pipe waits for messages once its input has run out (`-w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Linger {
    /// This long.
    For(Duration),
    /// Until the server closes or Ctrl-C (`-w -1`, as wscat).
    Forever,
}

impl Linger {
    /// The wait, or `None` for ever.
    pub(crate) fn duration(self) -> Option<Duration> {
        match self {
            Linger::For(duration) => Some(duration),
            Linger::Forever => None,
        }
    }
}

/// `-w`: a duration, or wscat's spelling: seconds without a unit (`1`, `0.5`), `-1` for ever.
fn parse_linger(text: &str) -> Result<Linger, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(Linger::Forever);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map(Linger::For)
            .map_err(|_| {
                format!("`{text}` is not a wait: give seconds (`2`), a duration (`500ms`), or -1 to stay connected")
            });
    }
    values::parse_duration(text).map(Linger::For)
}

/// A `--report FORMAT=PATH` of `wsprobe run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReportTarget {
    Junit(PathBuf),
    Json(PathBuf),
}

fn parse_report_target(text: &str) -> Result<ReportTarget, String> {
    match text.split_once('=') {
        Some(("junit", path)) if !path.is_empty() => Ok(ReportTarget::Junit(path.into())),
        Some(("json", path)) if !path.is_empty() => Ok(ReportTarget::Json(path.into())),
        _ => Err(format!(
            "`{text}` is not a report; write `junit=PATH` or `json=PATH`"
        )),
    }
}

/// `wsprobe run`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  wsprobe run scripts/echo.wsp --url ws://127.0.0.1:8080/dev
  wsprobe run tests/*.wsp --var TOKEN=\"$TOKEN\" --report junit=junit.xml")]
pub struct RunArgs {
    /// Script files to run, in order
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<PathBuf>,

    /// Set a variable for ${NAME} interpolation, repeatable
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = values::parse_key_value)]
    pub(crate) vars: Vec<(String, String)>,

    /// URL for `connect` lines that name none (also available as ${WS_URL})
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Write a report: junit=PATH or json=PATH, repeatable
    #[arg(long = "report", value_name = "FORMAT=PATH", value_parser = parse_report_target)]
    pub(crate) reports: Vec<ReportTarget>,

    /// Stop at the first failing test
    #[arg(long)]
    pub(crate) fail_fast: bool,

    /// Default wait of an expectation without `within`
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = values::parse_duration)]
    pub(crate) timeout: Duration,

    /// Base URL of the @connections API for post/get/delete (default: derived from the
    /// connection's URL, e.g. ws://host/dev -> http://host/dev/@connections)
    #[arg(long, value_name = "URL")]
    pub(crate) management_url: Option<String>,

    /// Write a transcript: one JSON line per event (frames, handshake, close), secrets redacted
    ///
    /// Each line has `ts` (RFC 3339, microseconds), `kind`, `conn` and, for traffic, `dir`
    /// (in/out). The schema is in docs/transcript.md.
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub(crate) log: Option<PathBuf>,

    #[command(flatten)]
    pub inbox: InboxArgs,

    #[command(flatten)]
    pub session: SessionArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `wsprobe load`. Its pings are route-tagged and their echoes matched: `--echo off`
/// cannot work, so only `body` and `full` are offered (`off` is hidden, and refused with
/// a reason when the plan is checked).
#[derive(Clone, Debug, Args)]
#[command(mut_arg("echo", |arg| arg.value_parser(load_echo_parser())))]
#[command(mut_arg("subprotocols", |arg| arg.hide_short_help(true)))]
#[command(
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    subcommand_negates_reqs = true,
    after_help = "\
Examples:
  wsprobe load ws://127.0.0.1:8080/dev -c 50 -d 10s    # closed model: max rate
  wsprobe load URL -c 100 --rate 2000/s -d 1m --threshold 'p99<50ms'
  wsprobe load URL -c 40000 --shard I/4 --start-at TIME --report-json -
  wsprobe load merge shard-*.json --threshold 'p99<50ms'"
)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub(crate) command: Option<LoadCommand>,

    /// ws:// or wss:// URL of the stage (may come from --stage instead)
    // Not `required_unless_present`: checked after parsing, so the error can name --stage.
    #[arg(value_name = "URL", default_value = "", hide_default_value = true)]
    pub url: String,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Number of connections
    #[arg(short = 'c', long, value_name = "N", default_value_t = 10)]
    pub(crate) connections: usize,

    /// Target message rate over all connections (open model)
    ///
    /// Without it, one ping is in flight per connection (closed model: the maximum rate).
    #[arg(long, value_name = "N/s", value_parser = values::parse_rate)]
    pub(crate) rate: Option<f64>,

    /// How long to send for [default: 10s]
    ///
    /// Counted from when every connection has tried to open.
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = values::parse_duration, conflicts_with = "count")]
    pub(crate) duration: Option<Duration>,

    /// How many pings to send in all
    #[arg(short = 'n', long, value_name = "COUNT")]
    pub(crate) count: Option<u64>,

    /// Spread connection opening over this long
    ///
    /// Never faster than --connect-rate.
    #[arg(long, value_name = "DURATION", value_parser = values::parse_duration, hide_short_help = true)]
    pub(crate) ramp_up: Option<Duration>,

    /// Maximum rate of new connections
    #[arg(long, value_name = "N/s", default_value = "100/s", value_parser = values::parse_rate, hide_short_help = true)]
    pub(crate) connect_rate: f64,

    /// Bind connections to this source address, repeatable (taken in turn)
    ///
    /// Each source address has its own range of ephemeral ports (about 28,000 connections
    /// to one server address): e.g. 127.0.0.2 and 127.0.0.3 on loopback, or this machine's
    /// other addresses. A connection dials only server addresses of its family. Through a
    /// proxy, it binds the connection to the proxy.
    #[arg(
        long = "local-address",
        value_name = "ADDR",
        help_heading = "Connection",
        hide_short_help = true
    )]
    pub(crate) local_addresses: Vec<std::net::IpAddr>,

    /// Size of each ping message in bytes (at most 16MiB)
    ///
    /// Padding is added up to it.
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = values::parse_size, hide_short_help = true)]
    pub(crate) size: u64,

    /// Route of each ping
    #[arg(
        long,
        value_name = "NAME",
        default_value = "send",
        hide_short_help = true
    )]
    pub(crate) route: String,

    /// An echo that takes longer than this is counted as late
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = values::parse_duration)]
    pub(crate) timeout: Duration,

    /// Pass/fail condition, repeatable: p99<50ms, errors<0.1%, …
    ///
    /// For example p99<50ms, p99.9<200ms, errors<0.1%, connect_errors==0, rate>=950/s.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub(crate) thresholds: Vec<String>,

    /// Write the report as JSON, with the exact histograms (`-`: stdout)
    ///
    /// With `-` the JSON goes to stdout and the table to stderr, so a pod's log is the report.
    #[arg(long, value_name = "PATH")]
    pub(crate) report_json: Option<PathBuf>,

    /// Write round-trip latencies as an HdrHistogram interval log
    #[arg(long, value_name = "PATH", hide_short_help = true)]
    pub(crate) hdr_log: Option<PathBuf>,

    /// Write the report as one self-contained HTML page with charts
    ///
    /// The page needs no network to be viewed: its charts are inline SVG.
    #[arg(long, value_name = "PATH")]
    pub(crate) report_html: Option<PathBuf>,

    /// No live progress line
    #[arg(long, hide_short_help = true)]
    pub(crate) no_progress: bool,

    /// Run shard I (0-based) of N; N alone takes I from JOB_COMPLETION_INDEX
    ///
    /// The shards' thresholds are left to `load merge`, which sees the whole run.
    #[arg(long, value_name = "I/N", value_parser = crate::load::shard::parse_shard_flag)]
    pub(crate) shard: Option<crate::load::shard::ShardFlag>,

    /// Open the connections first, send from TIME (RFC 3339 or Unix seconds)
    ///
    /// For example 2026-11-28T05:00:00Z or 1795842000.5; shards given one TIME send together.
    #[arg(long, value_name = "TIME", value_parser = crate::load::shard::parse_start_at)]
    pub(crate) start_at: Option<std::time::SystemTime>,

    /// The run id the shards' reports share [default: a digest of the settings]
    #[arg(long, value_name = "ID", hide_short_help = true)]
    pub(crate) run_id: Option<String>,

    // `--keepalive`, `--reconnect` and the rest, as `connect` has them (`--help` only): a
    // soak run keeps its connections through the server's idle and maximum-duration
    // closes. `load` refuses `--on-connect` (see `lower::load_session`).
    #[command(flatten)]
    pub session: SessionArgs,
}

/// The subcommands of `wsprobe load`.
#[derive(Clone, Debug, Subcommand)]
pub(crate) enum LoadCommand {
    /// Merge the --report-json files of a sharded run exactly
    ///
    /// Counts are summed and percentiles come from the merged histograms; thresholds are
    /// evaluated once, on the whole run.
    Merge(MergeArgs),
}

/// `wsprobe load merge`.
#[derive(Clone, Debug, Args)]
#[command(after_help = "\
The reports must come from one sharded run (one run id, the same settings, shards 0 to
N-1, each once). `-` reads standard input, where concatenated JSON documents are read
and other lines skipped, so a pod's log will do:

  wsprobe load merge shard-0.json shard-1.json shard-2.json --threshold 'p99<50ms'
  kubectl logs -l job-name=wsprobe-load --tail=-1 | wsprobe load merge -

Exit codes: 0 success, 1 a threshold failed, 2 the reports cannot be merged.")]
pub(crate) struct MergeArgs {
    /// Shard reports (--report-json of `load --shard`), or `-` for standard input
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<PathBuf>,

    /// Pass/fail condition on the whole run, repeatable (besides those the shards were given)
    #[arg(long = "threshold", value_name = "EXPR")]
    pub(crate) thresholds: Vec<String>,

    /// Write the merged report as JSON (`-`: to stdout, the table then goes to stderr)
    #[arg(long, value_name = "PATH")]
    pub(crate) report_json: Option<PathBuf>,

    /// Write the merged report as one self-contained HTML page with charts and the shards
    #[arg(long, value_name = "PATH")]
    pub(crate) report_html: Option<PathBuf>,
}

/// `load --echo`: the [`EchoFlag`]s, with `off` hidden from the help.
fn load_echo_parser() -> impl clap::builder::TypedValueParser<Value = EchoFlag> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new([
        PossibleValue::new("body").help("The value of the body field, as JSON"),
        PossibleValue::new("full").help("The whole message, as sent"),
        PossibleValue::new("off").hide(true),
    ])
    .map(|value| match value.as_str() {
        "full" => EchoFlag::Full,
        "off" => EchoFlag::Off,
        _ => EchoFlag::Body,
    })
}

/// An `@connections` call of `wsprobe manage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ManageAction {
    /// PostToConnection: send DATA to the client
    Post,
    /// GetConnection: when it connected, from where, when it was last active
    Get,
    /// DeleteConnection: close the connection
    Delete,
}

/// `wsprobe manage`. One HTTP call: the WebSocket-only options (`-s`, `-o`, the message
/// conventions) do nothing for it, so they are hidden here and refused when given
/// ([`lower::manage_connection`](super::lower::manage_connection)).
#[derive(Debug, Args)]
#[command(mut_arg("subprotocols", |arg| arg.hide(true)))]
#[command(mut_arg("origin", |arg| arg.hide(true)))]
#[command(mut_arg("route_field", |arg| arg.hide(true)))]
#[command(mut_arg("body_field", |arg| arg.hide(true)))]
#[command(mut_arg("echo", |arg| arg.hide(true)))]
#[command(after_help = "\
The URL is the stage (ws:// or wss://, as for connect) or its management endpoint
(http(s)://HOST/STAGE or http(s)://HOST/STAGE/@connections).

Examples:
  wsprobe manage post R0oXAdfD0kwCH6w= '{\"hi\":1}' --url ws://127.0.0.1:8080/dev
  echo hi | wsprobe manage post R0oXAdfD0kwCH6w= --url \"$STAGE_URL\" --sigv4
  wsprobe manage get R0oXAdfD0kwCH6w= --url \"$STAGE_URL\" --sigv4 --profile dev
  wsprobe manage delete R0oXAdfD0kwCH6w= --url ws://127.0.0.1:8080/dev

Exit codes: 0 on a 2xx answer, 1 on any other status (e.g. 410 GoneException),
3 if the endpoint cannot be reached.")]
pub struct ManageArgs {
    /// post, get or delete
    #[arg(value_name = "ACTION", value_enum)]
    pub(crate) action: ManageAction,

    /// The connection id, e.g. R0oXAdfD0kwCH6w= (it may start with `-`)
    #[arg(value_name = "CONNECTION_ID", allow_hyphen_values = true)]
    pub(crate) connection_id: String,

    /// For post: the data to send (without it, standard input is sent)
    #[arg(value_name = "DATA", allow_hyphen_values = true)]
    pub(crate) data: Option<String>,

    /// The stage URL or its @connections endpoint (may come from --stage instead)
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "stage",
        default_value = "",
        hide_default_value = true
    )]
    pub url: String,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// What `serve` does with a message no route matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DefaultRoute {
    /// Echo the frame back (a plain echo server)
    Echo,
    /// No $default route: the client gets API Gateway's Forbidden error frame
    None,
}

/// Log line format of `serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One access-log-like line per event
    Plain,
    /// One JSON object per line
    Json,
}

/// `wsprobe serve`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  wsprobe serve                                  # ws://127.0.0.1:8080/dev
  wsprobe serve --route-selection-expression '$request.body.message'
  wsprobe serve --listen 127.0.0.1:0 --api-key k1 --route chat=broadcast
  wsprobe serve --integration \"$LAMBDA_URL\" --authorizer \"$AUTHORIZER_URL\"")]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,

    /// Stage name: clients connect to /STAGE
    #[arg(long, value_name = "NAME", default_value = "dev")]
    pub stage: String,

    /// Require this x-api-key on $connect (403 otherwise)
    ///
    /// Repeatable; comma-separated in the environment.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "WSPROBE_SERVE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) api_keys: Vec<Secret>,

    /// Require 'Authorization: Bearer TOKEN' on $connect (401 otherwise)
    ///
    /// Repeatable; comma-separated in the environment.
    #[arg(
        long = "token",
        value_name = "TOKEN",
        env = "WSPROBE_SERVE_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) tokens: Vec<Secret>,

    /// Route selection expression
    ///
    /// $request.body.PATH, ${request.body.PATH}, or several variables with static text
    /// (${request.body.kind}-${request.body.op}).
    #[arg(long, value_name = "EXPR", default_value = "$request.body.action")]
    pub(crate) route_selection_expression: String,

    /// Add a route, repeatable: NAME=echo-body|echo|broadcast|whoami|lambda
    ///
    /// NAME=echo-body|echo|broadcast|whoami|lambda|lambda:URL. $default=… sets the default
    /// route; $connect and $disconnect take lambda only.
    #[arg(long = "route", value_name = "NAME=BEHAVIOUR")]
    pub(crate) routes: Vec<String>,

    /// Lambda-runtime URL for $connect, $disconnect and $default
    ///
    /// Replaces the built-in send route: each event is POSTed to this Lambda-runtime URL,
    /// e.g. http://127.0.0.1:9000/2015-03-31/functions/function/invocations
    #[arg(long, value_name = "URL")]
    pub(crate) integration: Option<String>,

    /// Lambda-runtime URL of a REQUEST authorizer for $connect
    ///
    /// A REQUEST event is POSTed to it before the handshake is accepted (401, 403 or 500
    /// when it refuses or fails).
    #[arg(long, value_name = "URL")]
    pub(crate) authorizer: Option<String>,

    /// The authorizer's identity sources, comma-separated
    ///
    /// route.request.header.NAME, route.request.querystring.NAME; any missing or empty gets
    /// 401 without a call [default: route.request.header.Authorization]
    #[arg(
        long,
        value_name = "SOURCES",
        requires = "authorizer",
        hide_short_help = true
    )]
    pub(crate) identity_source: Option<String>,

    /// Give route NAME a route response, repeatable
    ///
    /// Its integration's body goes back to the caller.
    #[arg(long = "route-response", value_name = "NAME", hide_short_help = true)]
    pub(crate) route_responses: Vec<String>,

    /// How long an integration may take
    ///
    /// After it, the client gets `Internal server error` (502 on $connect).
    #[arg(long, value_name = "DURATION", default_value = "29s", value_parser = values::parse_duration, hide_short_help = true)]
    pub(crate) integration_timeout: Duration,

    /// Invocations in flight at once per integration endpoint
    ///
    /// The others wait in its queue (1: one Lambda runtime handles one invocation at a time).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..), hide_short_help = true)]
    pub(crate) integration_concurrency: u16,

    /// What unmatched messages get
    ///
    /// `echo`, or `none` (no $default route: API Gateway's Forbidden frame). Default: none,
    /// or the --integration handler when one is given.
    #[arg(long, value_name = "ROUTE", value_enum)]
    pub(crate) default_route: Option<DefaultRoute>,

    /// Close a connection with 1001 after this long without a message
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = values::parse_duration, hide_short_help = true)]
    pub(crate) idle_timeout: Duration,

    /// Close a connection with 1001 after this long in all
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = values::parse_duration, hide_short_help = true)]
    pub(crate) max_connection_duration: Duration,

    /// Largest frame accepted (bigger closes with 1009)
    #[arg(long, value_name = "BYTES", default_value = "32KiB", value_parser = values::parse_size, hide_short_help = true)]
    pub(crate) max_frame_size: u64,

    /// Largest message accepted (bigger closes with 1009)
    #[arg(long, value_name = "BYTES", default_value = "128KiB", value_parser = values::parse_size, hide_short_help = true)]
    pub(crate) max_message_size: u64,

    /// PEM certificate chain: serve wss:// and https:// (with --tls-key)
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        hide_short_help = true
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        hide_short_help = true
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Serve wss:// with a generated certificate, written to PATH for --cacert
    ///
    /// The certificate is generated at start for localhost, 127.0.0.1 and ::1; its PEM is
    /// written to PATH (default: a file in the temp dir, printed on start) for clients'
    /// --cacert.
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        conflicts_with_all = ["tls_cert", "tls_key"]
    )]
    pub(crate) tls_self_signed: Option<Option<PathBuf>>,

    /// Require a SigV4 signature by this key (403 otherwise), repeatable
    ///
    /// Service execute-api, on $connect and @connections; comma-separated in the
    /// environment.
    #[arg(
        long = "iam-key",
        value_name = "ACCESS_KEY:SECRET",
        env = "WSPROBE_SERVE_IAM_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) iam_keys: Vec<Secret>,

    /// Log line format
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Plain, hide_short_help = true)]
    pub(crate) log_format: LogFormat,

    /// No log lines
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn linger_takes_durations_wscat_seconds_and_minus_one() {
        assert_eq!(parse_linger("0"), Ok(Linger::For(Duration::ZERO)));
        assert_eq!(
            parse_linger("250ms"),
            Ok(Linger::For(Duration::from_millis(250)))
        );
        assert_eq!(parse_linger("5"), Ok(Linger::For(Duration::from_secs(5))));
        assert_eq!(
            parse_linger("0.5"),
            Ok(Linger::For(Duration::from_millis(500)))
        );
        assert_eq!(parse_linger("-1"), Ok(Linger::Forever));
        assert!(parse_linger("-2").is_err());
        assert!(parse_linger("soon").is_err());
    }

    #[test]
    fn wscat_dash_c_becomes_connect() {
        let spelled = |args: &[&str]| -> Vec<String> {
            with_wscat_spelling(args.iter().map(std::ffi::OsString::from))
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            spelled(&["wsprobe", "-c", "ws://h/dev"]),
            ["wsprobe", "connect", "-c", "ws://h/dev"]
        );
        assert_eq!(
            spelled(&["wsprobe", "--no-color", "--connect=ws://h/dev"]),
            ["wsprobe", "--no-color", "connect", "--connect=ws://h/dev"]
        );
        assert_eq!(
            spelled(&["wsprobe", "load", "URL", "-c", "5"]),
            ["wsprobe", "load", "URL", "-c", "5"]
        );
        assert_eq!(spelled(&["wsprobe"]), ["wsprobe"]);
    }

    #[test]
    fn report_targets() {
        assert_eq!(
            parse_report_target("junit=a.xml"),
            Ok(ReportTarget::Junit("a.xml".into()))
        );
        assert_eq!(
            parse_report_target("json=r.json"),
            Ok(ReportTarget::Json("r.json".into()))
        );
        assert!(parse_report_target("xml=a").is_err());
        assert!(parse_report_target("junit=").is_err());
    }
}
