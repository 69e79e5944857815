//! Integration tests: real stages run locally — `serve --tls-self-signed` with `--cacert`,
//! `--proxy` through an HTTP CONNECT proxy written here, stage profiles (`wsprobe.toml`),
//! and Lambda integrations served by a small HTTP endpoint written here.

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wsprobe::cli::ConnectionArgs;
use wsprobe_core::client::{self, ClientConfig, ConnectError};
use wsprobe_core::session::{Frame, Outgoing, Session};

use crate::support::{ServeProcess, TIMEOUT, start_proxy, within};

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
    crate::support::lowered_config(&connection_args(flags)).expect("a valid configuration")
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

/// A script of the sample app's round trip, for `wsprobe run` (the URL comes from `--url`
/// or a stage profile).
const ECHO_SCRIPT: &str = "connect\nsend send \"over the stage\"\nexpect echo within 5s\n";

/// Runs the real binary without blocking the test's runtime (a proxy or a Lambda written
/// in the test may have to answer it), with no credentials or stage from the
/// environment.
async fn run_binary(args: &[&str]) -> std::process::Output {
    run_binary_with(args, |_| {}).await
}

async fn run_binary_with(
    args: &[&str],
    adjust: impl FnOnce(&mut std::process::Command),
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .env_remove("WSPROBE_STAGE")
        .env_remove("WSPROBE_CONFIG")
        .stdin(std::process::Stdio::null());
    adjust(&mut command);
    // On a blocking thread, killed after the timeout: the test's tasks keep running.
    let run = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::from_std(command)
            .timeout(TIMEOUT)
            .output()
    });
    run.await
        .expect("the blocking task")
        .expect("running wsprobe")
}

/// Exit code, stdout and stderr, for assertion messages.
fn describe(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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
    // The same through the real binary: `wsprobe run --cacert`.
    let script = dir.path().join("echo.wsp");
    std::fs::write(&script, ECHO_SCRIPT).unwrap();
    let output = run_binary(&[
        "run",
        "--url",
        &server.ws_url,
        "--cacert",
        cert_arg,
        script.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // The certificate names localhost too.
    let by_name = server.ws_url.replace("127.0.0.1", "localhost");
    send_round_trip(&by_name, &client_config(&["--cacert", cert_arg])).await;
}

// ---------------------------------------------------------------------------------------
// Proxies

#[tokio::test]
async fn an_explicit_proxy_tunnels_even_loopback_with_basic_auth_from_its_url() {
    let (proxy, mut tunnels, proxy_task) = start_proxy(None).await;
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
        crate::support::spawn_tls_server(wsprobe_serve::ServeConfig::default()).await;
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

    // The real binary: `wsprobe run --proxy URL` tunnels a loopback target too.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("echo.wsp");
    std::fs::write(&script, ECHO_SCRIPT).unwrap();
    let output = run_binary(&[
        "run",
        "--url",
        &server.ws_url(),
        "--proxy",
        &proxy_url,
        script.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!describe(&output).contains("s3cr"), "{}", describe(&output));
    let tunnel = within("the tunnel", tunnels.recv()).await.unwrap();
    assert_eq!(
        tunnel.request_line,
        format!("CONNECT {} HTTP/1.1", server.addr())
    );
    assert_eq!(
        tunnel.proxy_authorization.as_deref(),
        Some("Basic YWxpY2U6czNjckB0")
    );

    // `--no-proxy` and `--proxy ''` connect directly: the proxy sees nothing.
    send_round_trip(&server.ws_url(), &client_config(&["--no-proxy"])).await;
    send_round_trip(&server.ws_url(), &client_config(&["--proxy", ""])).await;
    assert!(tunnels.try_recv().is_err());
    proxy_task.abort();
}

#[test]
fn a_bad_proxy_url_is_a_usage_error_that_hides_its_password() {
    let error = crate::support::lowered_config(&connection_args(&[
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

/// `wsprobe connect ARGS…` parsed and lowered as the binary does.
fn lowered_connect(args: &[&str]) -> wsprobe::cli::lower::Lowered {
    let argv = ["wsprobe", "connect"].iter().chain(args.iter());
    let cli = wsprobe::cli::Cli::try_parse_from(argv).expect("valid arguments");
    let wsprobe::cli::Command::Connect(connect) = cli.command else {
        panic!("not connect")
    };
    wsprobe::cli::lower::connection(&connect.connection, connect.url).expect("the profile applies")
}

#[tokio::test]
async fn a_stage_profile_fills_the_url_auth_and_key_of_a_connection() {
    let server = crate::support::spawn_server(wsprobe_serve::ServeConfig {
        // The token the profile reads from $CARGO_PKG_NAME, which cargo sets for every
        // test process (no test may change the environment: they run in parallel).
        tokens: vec![wsprobe_core::secret::Secret::new(env!("CARGO_PKG_NAME"))],
        api_keys: vec![wsprobe_core::secret::Secret::new("plain-key")],
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

    let lowered = lowered_connect(&["--stage", "local", "--config", config_arg]);
    let profile = lowered.stage.as_ref().expect("a profile was used");
    assert_eq!(profile.name, "local");
    assert_eq!(lowered.url.as_deref(), Some(server.ws_url().as_str()));
    let config = wsprobe::cli::lower::client_config(&lowered.options).unwrap();
    send_round_trip(&server.ws_url(), &config).await;

    // A stage without the token is refused by the server: the profile really mattered.
    let lowered = lowered_connect(&["--stage", "unauthorized", "--config", config_arg]);
    let config = wsprobe::cli::lower::client_config(&lowered.options).unwrap();
    let url = client::parse_url(lowered.url.as_deref().unwrap()).unwrap();
    match within("the refusal", client::connect(&url, &config)).await {
        Err(ConnectError::Rejected { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected a 401, got {other:?}"),
    }

    // A flag beats the profile: a wrong --api-key given on the command line is used.
    let lowered = lowered_connect(&[
        "--stage",
        "local",
        "--config",
        config_arg,
        "--api-key",
        "wrong",
    ]);
    let config = wsprobe::cli::lower::client_config(&lowered.options).unwrap();
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

// ---------------------------------------------------------------------------------------
// Lambda integrations

/// A Lambda-runtime-compatible endpoint written here: it answers POSTed events the way
/// the sample app's handlers would, records every event, and (for `send`) posts back
/// through `@connections`, building the endpoint from the event's `domainName` and
/// `stage` as a handler does.
struct TestLambda {
    url: String,
    events: mpsc::UnboundedReceiver<serde_json::Value>,
    task: JoinHandle<()>,
}

impl Drop for TestLambda {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the test handler reaches `@connections`: the scheme it puts before
/// `{domainName}/{stage}` and the client it posts with.
#[derive(Clone)]
struct Callback {
    scheme: &'static str,
    client: ClientConfig,
}

impl TestLambda {
    /// A handler that calls back over plain `http://`.
    async fn start() -> Self {
        Self::start_with(Callback {
            scheme: "http",
            client: ClientConfig::default(),
        })
        .await
    }

    async fn start_with(callback: Callback) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/2015-03-31/functions/function/invocations",
            listener.local_addr().unwrap()
        );
        let (record, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(invocation(socket, record.clone(), callback.clone()));
            }
        });
        Self { url, events, task }
    }

    /// The next event the handler received.
    async fn next_event(&mut self) -> serde_json::Value {
        within("an event at the Lambda", self.events.recv())
            .await
            .expect("the Lambda is running")
    }
}

/// Reads one HTTP request, hands its JSON body to the handler, writes the answer.
async fn invocation(
    mut socket: tokio::net::TcpStream,
    record: mpsc::UnboundedSender<serde_json::Value>,
    callback: Callback,
) {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let (head_end, length) = loop {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while data.len() < head_end + length {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
    }
    let event: serde_json::Value =
        serde_json::from_slice(&data[head_end..head_end + length]).expect("a JSON event");
    let _ = record.send(event.clone());
    let Some((answer, function_error)) = handle_event(&event, &callback).await else {
        // A handler that never returns: the integration timeout must end the wait.
        std::future::pending::<()>().await;
        return;
    };
    let extra = if function_error {
        "X-Amz-Function-Error: Unhandled\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// The handler: `$connect` authorizes from `Authorization` (401 otherwise); `send`
/// answers `echo:DATA` as its route response and posts `pushed:DATA` through
/// `@connections`; `boom` throws; `slow` never returns; anything else answers a body
/// that must not reach the client (no route response).
async fn handle_event(event: &serde_json::Value, callback: &Callback) -> Option<(String, bool)> {
    use serde_json::json;
    let context = &event["requestContext"];
    let answer = match context["routeKey"].as_str().unwrap_or_default() {
        "$connect" => {
            let offered = event["headers"]["Sec-WebSocket-Protocol"]
                .as_str()
                .unwrap_or_default();
            if event["headers"]["Authorization"] == "Bearer good" && offered.contains("json") {
                // The handler picks the subprotocol, as API Gateway's docs show.
                json!({"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "json"}})
            } else if event["headers"]["Authorization"] == "Bearer good" {
                json!({"statusCode": 200})
            } else {
                json!({"statusCode": 401, "body": "{\"message\":\"Unauthorized\"}"})
            }
        }
        "$disconnect" => json!({"statusCode": 200}),
        "send" => {
            let message: serde_json::Value =
                serde_json::from_str(event["body"].as_str().unwrap_or("{}")).unwrap();
            let data = message["data"].as_str().unwrap_or_default();
            // As the sample's send Lambda builds its endpoint.
            let endpoint = format!(
                "{}://{}/{}/@connections/{}",
                callback.scheme,
                context["domainName"].as_str().unwrap(),
                context["stage"].as_str().unwrap(),
                context["connectionId"].as_str().unwrap()
            );
            let posted = wsprobe_core::client::http::request(
                hyper::Method::POST,
                &url::Url::parse(&endpoint).unwrap(),
                Default::default(),
                format!("pushed:{data}"),
                &callback.client,
            )
            .await
            .expect("the @connections call");
            assert_eq!(posted.status, 200, "{}", posted.text());
            json!({"statusCode": 200, "body": format!("echo:{data}")})
        }
        "boom" => {
            return Some((
                json!({"errorMessage": "boom", "errorType": "Error"}).to_string(),
                true,
            ));
        }
        "slow" => return None,
        _ => json!({"statusCode": 200, "body": "one-way routes send nothing back"}),
    };
    Some((answer.to_string(), false))
}

/// `wsprobe serve ARGS…` as a configuration, started in-process on port 0.
async fn serve_with(args: &[&str]) -> wsprobe_serve::RunningServer {
    let argv = ["wsprobe", "serve", "--quiet"].iter().chain(args.iter());
    let cli = wsprobe::cli::Cli::try_parse_from(argv).expect("valid serve flags");
    let wsprobe::cli::Command::Serve(serve) = cli.command else {
        panic!("not serve")
    };
    let config = wsprobe::cli::lower::serve_config(&serve).expect("a valid configuration");
    crate::support::spawn_server(config).await
}

/// The next text message on `ws`.
async fn next_text(ws: &mut crate::support::Ws) -> String {
    crate::support::next_text(ws).await
}

/// `{"message": "Internal server error", "connectionId":"…", "requestId":"…"}` byte for
/// byte, for connection `connection_id`.
fn assert_internal_error_frame(frame: &str, connection_id: &str) {
    let prefix = format!(
        "{{\"message\": \"Internal server error\", \"connectionId\":\"{connection_id}\", \"requestId\":\""
    );
    let request_id = frame
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix("\"}"))
        .unwrap_or_else(|| panic!("not the gateway's error frame: {frame}"));
    assert_eq!(request_id.len(), 16, "{frame}");
}

#[tokio::test]
async fn a_lambda_integration_authorizes_answers_posts_back_and_sees_the_disconnect() {
    let mut lambda = TestLambda::start().await;
    let server = serve_with(&[
        "--integration",
        &lambda.url,
        "--route",
        "send=lambda",
        "--route",
        "boom=lambda",
        "--route-response",
        "send",
        "--route-response",
        "boom",
    ])
    .await;
    let mut events = server.events();
    let host = server.addr().to_string();

    // Refused: the handler's 401 is the handshake's status.
    let (status, body) =
        crate::support::refused(&server.ws_url(), &[("Authorization", "Bearer bad")]).await;
    assert_eq!(status, 401);
    assert_eq!(body, r#"{"message":"Unauthorized"}"#);
    let refused = lambda.next_event().await;
    assert_eq!(refused["requestContext"]["eventType"], "CONNECT");
    // A refused connect never gets a $disconnect: the next event is the next connect.

    let url = format!("{}?room=7&tag=a&tag=b", server.ws_url());
    let mut ws = crate::support::connect_with(
        &url,
        &[
            ("Authorization", "Bearer good"),
            ("User-Agent", "stage-test"),
        ],
    )
    .await;
    let connect = lambda.next_event().await;
    let context = &connect["requestContext"];
    let connection_id = context["connectionId"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::support::next_connection_id(&mut events).await,
        connection_id
    );
    assert_eq!(context["routeKey"], "$connect");
    assert_eq!(context["eventType"], "CONNECT");
    assert_eq!(context["domainName"], host.as_str());
    assert_eq!(context["stage"], "dev");
    assert_eq!(context["messageDirection"], "IN");
    assert_eq!(context["requestId"], context["extendedRequestId"]);
    assert_eq!(context["requestId"].as_str().unwrap().len(), 16);
    assert!(context.get("messageId").is_none());
    assert_eq!(context["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["identity"]["userAgent"], "stage-test");
    assert!(context["connectedAt"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(connect["headers"]["Host"], host.as_str());
    assert_eq!(connect["headers"]["Authorization"], "Bearer good");
    assert_eq!(connect["headers"]["X-Forwarded-Proto"], "http");
    assert_eq!(
        connect["headers"]["X-Forwarded-Port"],
        server.addr().port().to_string()
    );
    assert!(connect["headers"].get("Connection").is_none());
    assert!(connect["headers"]["Sec-WebSocket-Key"].is_string());
    assert_eq!(
        connect["multiValueHeaders"]["Host"],
        serde_json::json!([host])
    );
    assert_eq!(
        connect["queryStringParameters"],
        serde_json::json!({"room": "7", "tag": "b"})
    );
    assert_eq!(
        connect["multiValueQueryStringParameters"]["tag"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(connect["isBase64Encoded"], false);

    // A route with a route response: its body comes back, and what the handler posted
    // through @connections arrives too (in either order: replies are asynchronous).
    let sent = r#"{"action":"send","data":"hi"}"#;
    crate::support::send_text(&mut ws, sent).await;
    let mut received = vec![next_text(&mut ws).await, next_text(&mut ws).await];
    received.sort();
    assert_eq!(received, ["echo:hi", "pushed:hi"]);
    let message = lambda.next_event().await;
    let message_context = &message["requestContext"];
    assert_eq!(message["body"], sent);
    assert_eq!(message_context["routeKey"], "send");
    assert_eq!(message_context["eventType"], "MESSAGE");
    assert_eq!(message_context["connectionId"], connection_id.as_str());
    assert_eq!(message_context["connectedAt"], context["connectedAt"]);
    assert_eq!(message_context["messageId"].as_str().unwrap().len(), 16);
    assert_ne!(message_context["requestId"], context["requestId"]);
    assert!(message.get("headers").is_none());

    // A one-way route ($default, from --integration): its body does not come back. The
    // server's event comes after any reply is queued, so the next frame tells.
    crate::support::send_text(&mut ws, "not json").await;
    let default_route = lambda.next_event().await;
    assert_eq!(default_route["requestContext"]["routeKey"], "$default");
    crate::support::wait_event(&mut events, |event| match event {
        wsprobe_serve::ServeEvent::Integration { route_key, .. } if route_key == "$default" => {
            Some(())
        }
        _ => None,
    })
    .await;

    // A handler that throws: the gateway's error frame, and the connection stays open.
    crate::support::send_text(&mut ws, r#"{"action":"boom"}"#).await;
    let frame = next_text(&mut ws).await;
    assert_internal_error_frame(&frame, &connection_id);
    assert_eq!(
        lambda.next_event().await["requestContext"]["routeKey"],
        "boom"
    );
    crate::support::send_text(&mut ws, r#"{"action":"send","data":"again"}"#).await;
    let mut received = vec![next_text(&mut ws).await, next_text(&mut ws).await];
    received.sort();
    assert_eq!(received, ["echo:again", "pushed:again"]);
    lambda.next_event().await;

    // The client closes: the handler gets the DISCONNECT with the close code.
    within("the close", futures_util::SinkExt::close(&mut ws))
        .await
        .unwrap();
    let disconnect = lambda.next_event().await;
    let disconnect_context = &disconnect["requestContext"];
    assert_eq!(disconnect_context["eventType"], "DISCONNECT");
    assert_eq!(disconnect_context["routeKey"], "$disconnect");
    assert_eq!(disconnect_context["disconnectStatusCode"], 1005);
    assert_eq!(
        disconnect_context["disconnectReason"],
        "Client-side close frame status not set"
    );
    assert_eq!(
        disconnect["headers"],
        serde_json::json!({"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""})
    );
    assert!(disconnect_context.get("messageId").is_none());

    // @connections DELETE closes with 1000, reported as API Gateway words it.
    let _second =
        crate::support::connect_with(&server.ws_url(), &[("Authorization", "Bearer good")]).await;
    let second_id = lambda.next_event().await["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = crate::support::http(
        server.addr(),
        "DELETE",
        &crate::support::connection_path(&server, &second_id),
        &[],
        b"",
    )
    .await;
    assert_eq!(deleted.status, 204);
    let disconnect = lambda.next_event().await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1000);
    assert_eq!(
        disconnect["requestContext"]["disconnectReason"],
        "Connection Closed Normally"
    );
}

#[tokio::test]
async fn a_slow_or_unreachable_integration_fails_as_api_gateway_does() {
    let mut lambda = TestLambda::start().await;
    // $connect goes nowhere (a closed port): 502. The routes go to the test Lambda.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = format!("http://{closed}/2015-03-31/functions/function/invocations");
    let server = serve_with(&[
        "--route",
        &format!("$connect=lambda:{unreachable}"),
        "--route",
        &format!("slow=lambda:{}", lambda.url),
        "--integration-timeout",
        "300ms",
    ])
    .await;
    let (status, _) = crate::support::refused(&server.ws_url(), &[]).await;
    assert_eq!(status, 502);

    // Without a $connect integration the sample app's send route still works, and a
    // route whose handler never answers gets the error frame after the timeout.
    let server = serve_with(&[
        "--route",
        &format!("slow=lambda:{}", lambda.url),
        "--integration-timeout",
        "300ms",
    ])
    .await;
    let mut events = server.events();
    let (mut ws, connection_id) = crate::support::connect_and_id(&server).await;
    crate::support::send_text(&mut ws, r#"{"action":"send","body":"sample"}"#).await;
    assert_eq!(next_text(&mut ws).await, "\"sample\"");
    crate::support::send_text(&mut ws, r#"{"action":"slow"}"#).await;
    assert_eq!(
        lambda.next_event().await["requestContext"]["routeKey"],
        "slow"
    );
    let frame = next_text(&mut ws).await;
    assert_internal_error_frame(&frame, &connection_id);
    let error = crate::support::wait_event(&mut events, |event| match event {
        wsprobe_serve::ServeEvent::Integration { error, .. } => error.clone(),
        _ => None,
    })
    .await;
    assert!(error.contains("did not answer within"), "{error}");
}

#[tokio::test]
async fn the_sample_apps_https_callback_reaches_a_self_signed_server() {
    // The sample's send Lambda posts to "https://" + domainName + "/" + stage: with
    // --tls-self-signed that is this server, once the handler trusts the certificate.
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("local.pem");
    let cert_arg = cert.to_str().unwrap();
    let tls = wsprobe_serve::ServeConfig::tls_self_signed(&cert).expect("a certificate");
    let mut lambda = TestLambda::start_with(Callback {
        scheme: "https",
        client: client_config(&["--cacert", cert_arg]),
    })
    .await;
    let argv = [
        "wsprobe",
        "serve",
        "--quiet",
        "--integration",
        &lambda.url,
        "--route",
        "send=lambda",
        "--route-response",
        "send",
    ];
    let cli = wsprobe::cli::Cli::try_parse_from(argv).unwrap();
    let wsprobe::cli::Command::Serve(serve) = cli.command else {
        panic!("not serve")
    };
    let mut config = wsprobe::cli::lower::serve_config(&serve).unwrap();
    config.tls = Some(tls);
    let server = crate::support::spawn_server(config).await;
    assert!(server.ws_url().starts_with("wss://"), "{}", server.ws_url());

    let client = client_config(&[
        "--cacert",
        cert_arg,
        "--auth",
        "Bearer good",
        "-s",
        "chat",
        "-s",
        "json",
    ]);
    let url = client::parse_url(&server.ws_url()).unwrap();
    let connection = within("the connection", client::connect(&url, &client))
        .await
        .expect("connected");
    // The handler chose the second offer (without it, the server takes the first).
    assert_eq!(connection.subprotocol.as_deref(), Some("json"));
    let connect = lambda.next_event().await;
    assert_eq!(connect["headers"]["X-Forwarded-Proto"], "https");
    let mut session = Session::start(connection);
    session
        .send(Outgoing::Text(r#"{"action":"send","data":"tls"}"#.into()))
        .await
        .unwrap();
    let mut received = Vec::new();
    for _ in 0..2 {
        match session.next(TIMEOUT).await.expect("a reply").frame {
            Frame::Text(text) => received.push(text.to_string()),
            other => panic!("expected text, got {other:?}"),
        }
    }
    received.sort();
    assert_eq!(received, ["echo:tls", "pushed:tls"]);
}

#[tokio::test]
async fn a_stage_profile_drives_wsprobe_run() {
    // The blog's sample app: routes by `message`, wants a bearer token and an API key.
    let mut server = ServeProcess::start_with_env(
        &[
            "--quiet",
            "--route-selection-expression",
            "$request.body.message",
        ],
        &[
            ("WSPROBE_SERVE_TOKENS", "t0k-secret"),
            ("WSPROBE_SERVE_API_KEYS", "k1-secret"),
        ],
    );
    let dir = ProfileDir::new(&format!(
        "[stages.dev]\nurl = \"{}\"\nauth = \"Bearer env:DEV_TOKEN\"\napi_key = \"env:DEV_KEY\"\nroute_field = \"message\"\n",
        server.ws_url
    ));
    std::fs::write(dir.work().join("echo.wsp"), ECHO_SCRIPT).unwrap();
    // For the run that must fail: the gateway's Forbidden frame is not the echo.
    std::fs::write(
        dir.work().join("forbidden.wsp"),
        "connect\nsend send \"over the stage\"\nexpect json $.message == \"Forbidden\" within 1s\n",
    )
    .unwrap();
    let in_dir = |command: &mut std::process::Command| {
        command
            .current_dir(dir.work())
            .env("HOME", dir.root.path().join("home"))
            .env("XDG_CONFIG_HOME", dir.root.path().join("config"))
            .env("DEV_TOKEN", "t0k-secret")
            .env("DEV_KEY", "k1-secret");
    };

    let output = run_binary_with(&["run", "--stage", "dev", "echo.wsp"], in_dir).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        !describe(&output).contains("t0k-secret"),
        "{}",
        describe(&output)
    );

    // A flag wins over the profile: a wrong token is refused (exit 3).
    let output = run_binary_with(
        &[
            "run",
            "--stage",
            "dev",
            "--auth",
            "Bearer wrong",
            "echo.wsp",
        ],
        in_dir,
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));

    // So does a route field given on the command line, even the default one: `action`
    // is not this app's, so the message matches no route.
    let output = run_binary_with(
        &[
            "run",
            "--stage",
            "dev",
            "--route-field",
            "action",
            "forbidden.wsp",
        ],
        in_dir,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let output = run_binary_with(&["run", "--stage", "dev", "forbidden.wsp"], in_dir).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
}

#[tokio::test]
async fn a_stage_profile_drives_wsprobe_connect_over_wss() {
    // A TLS stage of the blog's sample app: its certificate next to the profile (a
    // relative `cacert`), a bearer token from the environment, the `message` route field.
    let dir = ProfileDir::new("");
    let cert = dir.work().join("local.pem");
    let mut server = ServeProcess::start_with_env(
        &[
            "--quiet",
            "--route-selection-expression",
            "$request.body.message",
            "--tls-self-signed",
            cert.to_str().unwrap(),
        ],
        &[("WSPROBE_SERVE_TOKENS", "t0k-secret")],
    );
    std::fs::write(
        dir.work().join("wsprobe.toml"),
        format!(
            "[stages.dev]\nurl = \"{}\"\ncacert = \"local.pem\"\nauth = \"Bearer env:DEV_TOKEN\"\nroute_field = \"message\"\n",
            server.ws_url
        ),
    )
    .unwrap();
    let output = dir
        .wsprobe(&[
            "connect",
            "--stage",
            "dev",
            "-w",
            "0",
            "-x",
            r#"/send send "Hello World!""#,
            "-x",
            r#"/expect json "Hello World!" within 5s"#,
        ])
        .env("DEV_TOKEN", "t0k-secret")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("\"Hello World!\""), "{}", describe(&output));
    assert!(
        !describe(&output).contains("t0k-secret"),
        "{}",
        describe(&output)
    );

    // Without the token (the variable unset) the profile is refused before connecting.
    let output = dir
        .wsprobe(&["connect", "--stage", "dev", "-w", "0", "-x", "/quit"])
        .env_remove("DEV_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn each_stage_keeps_its_own_repl_history() {
    use expectrl::{ControlCode, Expect as _};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(crate::support::spawn_default_server());
    let dir = ProfileDir::new(&format!("[stages.dev]\nurl = \"{}\"\n", server.ws_url()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"));
    command
        .args(["connect", "--stage", "dev"])
        .current_dir(dir.work())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env("HOME", dir.root.path().join("home"))
        .env("XDG_CONFIG_HOME", dir.root.path().join("config"))
        .env("XDG_DATA_HOME", dir.root.path().join("data"))
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .env_remove("WSPROBE_STAGE");
    let mut pty = expectrl::Session::spawn(command).expect("spawning in a pty");
    pty.set_expect_timeout(Some(TIMEOUT));
    pty.expect("connected to").expect("the connect line");
    pty.expect("> ").expect("the prompt");
    pty.send_line(r#"/send send "remember me""#).unwrap();
    pty.expect("✓ echo").expect("the echo check");
    pty.send(ControlCode::EndOfTransmission).unwrap();
    pty.expect(expectrl::Eof).expect("wsprobe exits");
    let history = dir
        .root
        .path()
        .join("data")
        .join("wsprobe")
        .join("history-dev");
    let saved = std::fs::read_to_string(&history).expect("the stage's history file");
    assert!(saved.contains(r#"/send send "remember me""#), "{saved}");
    assert!(
        !dir.root
            .path()
            .join("data")
            .join("wsprobe")
            .join("history")
            .exists()
    );
}

#[tokio::test]
async fn a_stage_profile_signs_for_an_iam_stage() {
    let mut server = ServeProcess::start(&["--quiet", "--iam-key", "AKIDSTAGE:stage-secret"]);
    let dir = ProfileDir::new(&format!(
        "[stages.iam]\nurl = \"{url}\"\nsigv4 = true\nregion = \"us-east-1\"\n\n[stages.unsigned]\nurl = \"{url}\"\n",
        url = server.ws_url
    ));
    std::fs::write(dir.work().join("echo.wsp"), ECHO_SCRIPT).unwrap();
    let home = dir.root.path().join("home");
    // Only these variables: credentials from the environment, no real ~/.aws.
    let aws_env = |command: &mut std::process::Command| {
        command
            .env_clear()
            .current_dir(dir.work())
            .env("NO_COLOR", "1")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", dir.root.path().join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
            .env("AWS_CONFIG_FILE", home.join("no-config"))
            .env("AWS_ACCESS_KEY_ID", "AKIDSTAGE")
            .env("AWS_SECRET_ACCESS_KEY", "stage-secret");
    };
    let output = run_binary_with(&["run", "--stage", "iam", "echo.wsp"], aws_env).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        !describe(&output).contains("stage-secret"),
        "{}",
        describe(&output)
    );
    let output = run_binary_with(&["run", "--stage", "unsigned", "echo.wsp"], aws_env).await;
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    // `manage` takes its URL and signing from the stage too: signed, the id is just gone.
    let output = run_binary_with(
        &["manage", "get", "NoSuchId0000000=", "--stage", "iam"],
        aws_env,
    )
    .await;
    assert!(describe(&output).contains("410"), "{}", describe(&output));
    let output = run_binary_with(
        &["manage", "get", "NoSuchId0000000=", "--stage", "unsigned"],
        aws_env,
    )
    .await;
    assert!(describe(&output).contains("403"), "{}", describe(&output));
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
}

#[tokio::test]
async fn a_stage_profile_drives_wsprobe_load() {
    // The blog's sample app routes by `message`: load's pings must carry that field.
    let mut server = ServeProcess::start(&[
        "--quiet",
        "--route-selection-expression",
        "$request.body.message",
    ]);
    let dir = ProfileDir::new(&format!(
        "[stages.perf]\nurl = \"{}\"\nroute_field = \"message\"\n",
        server.ws_url
    ));
    let report = dir.work().join("load.json");
    let in_dir = |command: &mut std::process::Command| {
        command
            .current_dir(dir.work())
            .env("HOME", dir.root.path().join("home"))
            .env("XDG_CONFIG_HOME", dir.root.path().join("config"));
    };
    let output = run_binary_with(
        &[
            "load",
            "--stage",
            "perf",
            "-c",
            "2",
            "-n",
            "20",
            "--no-progress",
            "--report-json",
            report.to_str().unwrap(),
            "--threshold",
            "errors==0",
        ],
        in_dir,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let written = std::fs::read_to_string(&report).expect("the load report");
    assert!(written.contains(&server.ws_url), "{written}");
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
}
