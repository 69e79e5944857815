//! Integration tests: real stages run locally — `serve --tls-self-signed` with `--cacert`,
//! `--proxy` through an HTTP CONNECT proxy written here, stage profiles (`wsprobe.toml`),
//! and Lambda integrations served by a small HTTP endpoint written here.

use std::net::SocketAddr;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wsprobe::cli::ConnectionArgs;
use wsprobe::client::{self, ClientConfig, ConnectError};
use wsprobe::session::{Frame, Outgoing, Session};

use crate::support::{ServeProcess, TIMEOUT, within};

/// The connection options alone, parsed like the real command line.
#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    connection: ConnectionArgs,
}

fn connection_args(flags: &[&str]) -> ConnectionArgs {
    Flags::try_parse_from(std::iter::once("wsprobe").chain(flags.iter().copied()))
        .expect("valid flags")
        .connection
}

fn client_config(flags: &[&str]) -> ClientConfig {
    ClientConfig::from_args(&connection_args(flags)).expect("a valid configuration")
}

/// Connects to `url` and proves the connection works: the sample app's `send` route
/// echoes the body.
async fn send_round_trip(url: &str, config: &ClientConfig) {
    let url = client::parse_url(url).expect("a URL");
    let connection = within("the connection", client::connect(&url, config))
        .await
        .expect("connected");
    let mut session = Session::start(connection);
    session
        .send(Outgoing::Text(
            r#"{"action":"send","body":"over the stage"}"#.into(),
        ))
        .await
        .expect("sent");
    let echoed = session.next(TIMEOUT).await.expect("the echo");
    assert_eq!(echoed.frame, Frame::Text("\"over the stage\"".into()));
}

// ---------------------------------------------------------------------------------------
// Local TLS

#[tokio::test]
async fn a_wss_round_trip_against_a_self_signed_server_with_cacert() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert = dir.path().join("certs").join("local.pem");
    let cert_arg = cert.to_str().expect("a UTF-8 path");
    let server = ServeProcess::start(&["--quiet", "--tls-self-signed", cert_arg]);
    assert!(
        server.ws_url.starts_with("wss://127.0.0.1:"),
        "{}",
        server.ws_url
    );
    assert!(
        server.connections_url.starts_with("https://"),
        "{}",
        server.connections_url
    );
    let pem = std::fs::read_to_string(&cert).expect("the certificate was written");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!pem.contains("PRIVATE KEY"), "the key must not be written");

    // Without the certificate the platform's roots do not trust it.
    let url = client::parse_url(&server.ws_url).unwrap();
    let refused = within(
        "the refused connection",
        client::connect(&url, &client_config(&[])),
    )
    .await
    .expect_err("an unknown issuer is refused");
    assert!(matches!(refused, ConnectError::Tls { .. }), "{refused:?}");

    send_round_trip(&server.ws_url, &client_config(&["--cacert", cert_arg])).await;
    // The certificate names localhost too.
    let by_name = server.ws_url.replace("127.0.0.1", "localhost");
    send_round_trip(&by_name, &client_config(&["--cacert", cert_arg])).await;
}

// ---------------------------------------------------------------------------------------
// Proxies

/// What the test proxy saw of one CONNECT request.
#[derive(Debug)]
struct Tunnel {
    request_line: String,
    proxy_authorization: Option<String>,
}

/// An HTTP CONNECT proxy on loopback that records each tunnel it opens.
async fn start_proxy() -> (SocketAddr, mpsc::UnboundedReceiver<Tunnel>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (record, tunnels) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                // Byte by byte, so nothing after the head is read by mistake.
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let mut lines = head.lines();
                let request_line = lines.next().unwrap().to_owned();
                let proxy_authorization = lines
                    .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
                    .map(str::to_owned);
                let target = request_line.split(' ').nth(1).unwrap().to_owned();
                let _ = record.send(Tunnel {
                    request_line,
                    proxy_authorization,
                });
                let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, tunnels, task)
}

#[tokio::test]
async fn an_explicit_proxy_tunnels_even_loopback_with_basic_auth_from_its_url() {
    let (proxy, mut tunnels, proxy_task) = start_proxy().await;
    let server = crate::support::spawn_default_server().await;
    // Loopback targets go direct when the proxy comes from the environment; a proxy
    // given with --proxy applies to every connection, so this one is tunnelled.
    let proxy_url = format!("http://alice:s3cr%40t@{proxy}");
    let config = client_config(&["--proxy", &proxy_url]);
    send_round_trip(&server.ws_url(), &config).await;
    let tunnel = within("the tunnel", tunnels.recv()).await.unwrap();
    assert_eq!(
        tunnel.request_line,
        format!("CONNECT {} HTTP/1.1", server.addr())
    );
    // base64("alice:s3cr@t"): the password is percent-decoded.
    assert_eq!(
        tunnel.proxy_authorization.as_deref(),
        Some("Basic YWxpY2U6czNjckB0")
    );
    // The credentials never show in the parsed options.
    let shown = format!("{:?}", connection_args(&["--proxy", &proxy_url]));
    assert!(!shown.contains("s3cr"), "{shown}");

    // wss runs end to end inside the tunnel: the certificate is the server's.
    let (secure, certificate) =
        crate::support::spawn_tls_server(wsprobe::serve::ServeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = certificate.write_to(dir.path());
    let config = client_config(&[
        "--proxy",
        &proxy.to_string(),
        "--cacert",
        cert.to_str().unwrap(),
    ]);
    send_round_trip(&secure.ws_url(), &config).await;
    let tunnel = within("the tunnel", tunnels.recv()).await.unwrap();
    assert_eq!(
        tunnel.request_line,
        format!("CONNECT {} HTTP/1.1", secure.addr())
    );
    assert_eq!(tunnel.proxy_authorization, None);

    // `--no-proxy` and `--proxy ''` connect directly: the proxy sees nothing.
    send_round_trip(&server.ws_url(), &client_config(&["--no-proxy"])).await;
    send_round_trip(&server.ws_url(), &client_config(&["--proxy", ""])).await;
    assert!(tunnels.try_recv().is_err());
    proxy_task.abort();
}

#[test]
fn a_bad_proxy_url_is_a_usage_error_that_hides_its_password() {
    let error = ClientConfig::from_args(&connection_args(&[
        "--proxy",
        "socks5://bob:hunter2@127.0.0.1:1080",
    ]))
    .unwrap_err();
    let shown = error.to_string();
    assert!(matches!(error, wsprobe::Error::Usage(_)), "{error:?}");
    assert!(shown.contains("only http://"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

// ---------------------------------------------------------------------------------------
// Stage profiles

/// A working directory with a `wsprobe.toml`, and empty home and config directories, so
/// the user's own files never count.
struct ProfileDir {
    root: tempfile::TempDir,
}

impl ProfileDir {
    fn new(toml: &str) -> Self {
        let root = tempfile::tempdir().expect("a temp dir");
        for dir in ["work", "home", "config", "data"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("work").join("wsprobe.toml"), toml).unwrap();
        Self { root }
    }

    fn work(&self) -> std::path::PathBuf {
        self.root.path().join("work")
    }

    /// The real binary, run in the working directory with the home and XDG directories
    /// pointed into the temp dir.
    fn wsprobe(&self, args: &[&str]) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::cargo_bin("wsprobe").unwrap();
        command
            .args(args)
            .current_dir(self.work())
            .env("HOME", self.root.path().join("home"))
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env("XDG_DATA_HOME", self.root.path().join("data"))
            .env("NO_COLOR", "1")
            .env_remove("WSPROBE_AUTH")
            .env_remove("WSPROBE_API_KEY")
            .env_remove("WSPROBE_STAGE")
            .env_remove("WSPROBE_CONFIG")
            .timeout(TIMEOUT);
        command
    }
}

/// Parses `wsprobe connect ARGS…` as the binary does, remembering explicit options.
fn connect_command(args: &[&str]) -> (wsprobe::cli::ConnectArgs, wsprobe::profile::GivenOptions) {
    use clap::{CommandFactory, FromArgMatches};
    let argv = ["wsprobe", "connect"].iter().chain(args.iter());
    let matches = wsprobe::cli::Cli::command()
        .try_get_matches_from(argv)
        .expect("valid arguments");
    let cli = wsprobe::cli::Cli::from_arg_matches(&matches).unwrap();
    let wsprobe::cli::Command::Connect(connect) = cli.command else {
        panic!("not connect")
    };
    (
        connect,
        wsprobe::profile::GivenOptions::from_matches(&matches),
    )
}

#[tokio::test]
async fn a_stage_profile_fills_the_url_auth_and_key_of_a_connection() {
    let server = crate::support::spawn_server(wsprobe::serve::ServeConfig {
        // The token the profile reads from $CARGO_PKG_NAME, which cargo sets for every
        // test process (no test may change the environment: they run in parallel).
        tokens: vec![wsprobe::secret::Secret::new(env!("CARGO_PKG_NAME"))],
        api_keys: vec![wsprobe::secret::Secret::new("plain-key")],
        ..Default::default()
    })
    .await;
    let dir = ProfileDir::new(&format!(
        r#"
[stages.local]
url = "{url}"
auth = "Bearer env:CARGO_PKG_NAME"
api_key = "plain-key"
allow_plaintext_secrets = true
route_field = "action"
echo = "body"

[stages.unauthorized]
url = "{url}"
api_key = "plain-key"
allow_plaintext_secrets = true
"#,
        url = server.ws_url()
    ));
    let config_file = dir.work().join("wsprobe.toml");
    let config_arg = config_file.to_str().unwrap();

    let (mut connect, given) = connect_command(&["--stage", "local", "--config", config_arg]);
    let profile = wsprobe::profile::apply(&mut connect.connection, &mut connect.url, &given)
        .expect("the profile applies")
        .expect("a profile was used");
    assert_eq!(profile.name, "local");
    assert_eq!(connect.url.as_deref(), Some(server.ws_url().as_str()));
    let config = ClientConfig::from_args(&connect.connection).unwrap();
    send_round_trip(&server.ws_url(), &config).await;

    // A stage without the token is refused by the server: the profile really mattered.
    let (mut connect, given) =
        connect_command(&["--stage", "unauthorized", "--config", config_arg]);
    wsprobe::profile::apply(&mut connect.connection, &mut connect.url, &given).unwrap();
    let config = ClientConfig::from_args(&connect.connection).unwrap();
    let url = client::parse_url(connect.url.as_deref().unwrap()).unwrap();
    match within("the refusal", client::connect(&url, &config)).await {
        Err(ConnectError::Rejected { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected a 401, got {other:?}"),
    }

    // A flag beats the profile: a wrong --api-key given on the command line is used.
    let (mut connect, given) = connect_command(&[
        "--stage",
        "local",
        "--config",
        config_arg,
        "--api-key",
        "wrong",
    ]);
    wsprobe::profile::apply(&mut connect.connection, &mut connect.url, &given).unwrap();
    let config = ClientConfig::from_args(&connect.connection).unwrap();
    match within("the refusal", client::connect(&url, &config)).await {
        Err(ConnectError::Rejected { status, .. }) => assert_eq!(status, 403),
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[test]
fn profile_errors_from_the_working_directory_name_the_file_line_and_column() {
    let dir = ProfileDir::new(
        "[stages.dev]\nurl = \"wss://abc123.execute-api.eu-west-1.amazonaws.com/dev\"\nauth = \"Bearer env:WSPROBE_IT_UNSET_TOKEN\"\n",
    );
    let output = dir
        .wsprobe(&["connect", "--stage", "dev", "-x", "/quit"])
        .env_remove("WSPROBE_IT_UNSET_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("wsprobe.toml:3:8"), "{stderr}");
    assert!(stderr.contains("$WSPROBE_IT_UNSET_TOKEN"), "{stderr}");

    let output = dir.wsprobe(&["load", "--stage", "prod"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no stage `prod`; stages here: dev"),
        "{stderr}"
    );

    // A secret written in the file is refused, and not repeated in the message.
    let dir =
        ProfileDir::new("[stages.dev]\nurl = \"ws://127.0.0.1:9/dev\"\napi_key = \"hunter2\"\n");
    let output = dir
        .wsprobe(&["run", "--stage", "dev", "x.wsp"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("wsprobe.toml:3:11"), "{stderr}");
    assert!(stderr.contains("allow_plaintext_secrets"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn the_user_config_directory_holds_profiles_when_the_working_directory_has_none() {
    let dir = ProfileDir::new("");
    std::fs::remove_file(dir.work().join("wsprobe.toml")).unwrap();
    let output = dir
        .wsprobe(&["connect", "--stage", "dev"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no wsprobe.toml in the working directory"),
        "{stderr}"
    );

    let user_dir = dir.root.path().join("config").join("wsprobe");
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::write(user_dir.join("wsprobe.toml"), "[stages.other]\n").unwrap();
    let output = dir
        .wsprobe(&["connect", "--stage", "dev"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("config/wsprobe/wsprobe.toml: no stage `dev`; stages here: other"),
        "{stderr}"
    );
}
