//! SigV4 (IAM) on loopback: `serve` with `iam_keys` checks signatures made by the client's
//! signer (headers and presigned URLs), refuses unsigned, wrongly signed and stale
//! requests, and `wsprobe manage` makes signed `@connections` calls with credentials from
//! a temporary shared-credentials file. No test reads the real home directory or the
//! real AWS variables: child processes get a cleared environment.

use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use wsprobe_core::aws::{Credentials, IamKey, SignatureMode, Signer};
use wsprobe_core::client::{self, ClientConfig, ConnectError};
use wsprobe_core::secret::Secret;
use wsprobe_serve::{LogSink, RunningServer, ServeConfig, ServeEvent};

use crate::support::*;

const ACCESS_KEY: &str = "AKIDWSPROBETEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLE";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessionTOKEN+/=";

fn iam_config() -> ServeConfig {
    ServeConfig {
        iam_keys: vec![IamKey::parse(&format!("{ACCESS_KEY}:{SECRET}")).expect("a key")],
        ..ServeConfig::default()
    }
}

fn signer(mode: SignatureMode, secret: &str, token: Option<&str>) -> Signer {
    Signer::new(
        Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: Secret::new(secret),
            session_token: token.map(Secret::new),
        },
        mode,
    )
    .with_region("us-east-1")
}

fn config_with(signer: Signer) -> ClientConfig {
    ClientConfig {
        signer: Some(signer),
        ..ClientConfig::default()
    }
}

async fn open(
    server: &RunningServer,
    config: &ClientConfig,
) -> Result<client::Connection, ConnectError> {
    let url = client::parse_url(&server.ws_url()).expect("the server's URL");
    within("the connect", client::connect(&url, config)).await
}

/// The handshake headers of the next CONNECT.
async fn next_connect_headers(
    events: &mut tokio::sync::broadcast::Receiver<ServeEvent>,
) -> Vec<(String, String)> {
    wait_event(events, |event| match event {
        ServeEvent::Connected { headers, .. } => Some(headers.clone()),
        _ => None,
    })
    .await
}

/// The reason of the next REJECT.
async fn next_rejection(
    events: &mut tokio::sync::broadcast::Receiver<ServeEvent>,
) -> (u16, String) {
    wait_event(events, |event| match event {
        ServeEvent::Rejected { status, reason, .. } => Some((*status, reason.clone())),
        _ => None,
    })
    .await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Sends `send` with a body on the connection and returns the echo.
async fn echo_round_trip(connection: &mut client::Connection, body: &str) -> String {
    let message = serde_json::json!({ "action": "send", "body": body }).to_string();
    within("a send", connection.stream.send(Message::text(message)))
        .await
        .expect("sending");
    next_text_message(connection, "the echo").await
}

/// The next text message on the connection (others are skipped); `what` names it in a
/// failure.
async fn next_text_message(connection: &mut client::Connection, what: &str) -> String {
    within(what, async {
        loop {
            match connection.stream.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("no text message ({what}): {other:?}"),
            }
        }
    })
    .await
}

fn assert_forbidden(result: Result<client::Connection, ConnectError>) {
    match result {
        Err(ConnectError::Rejected { status, body, .. }) => {
            assert_eq!(status, 403);
            assert_eq!(body, r#"{"message":"Forbidden"}"#);
        }
        Ok(_) => panic!("the handshake was accepted; 403 was expected"),
        Err(other) => panic!("expected a 403, got {other}"),
    }
}

/// A handshake request for the server's URL, signed now with the session token.
fn signed_request(
    server: &RunningServer,
    mode: SignatureMode,
) -> tungstenite::handshake::client::Request {
    let mut request = server.ws_url().into_client_request().expect("a request");
    signer(mode, SECRET, Some(SESSION_TOKEN))
        .sign(&mut request, b"")
        .expect("signing");
    request
}

#[tokio::test]
async fn a_header_signed_connect_is_accepted() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    let mut connection = open(
        &server,
        &config_with(signer(SignatureMode::Headers, SECRET, None)),
    )
    .await
    .expect("a signed connect");
    let headers = next_connect_headers(&mut events).await;
    let authorization = header(&headers, "authorization").expect("an Authorization header");
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"))
            && authorization.contains("/us-east-1/execute-api/aws4_request"),
        "{authorization}"
    );
    assert!(header(&headers, "x-amz-date").is_some());
    assert_eq!(
        echo_round_trip(&mut connection, "signed").await,
        r#""signed""#
    );
}

#[tokio::test]
async fn a_presigned_connect_is_accepted() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    let mut connection = open(
        &server,
        &config_with(signer(SignatureMode::Query, SECRET, Some(SESSION_TOKEN))),
    )
    .await
    .expect("a presigned connect");
    let headers = next_connect_headers(&mut events).await;
    assert_eq!(header(&headers, "authorization"), None);
    assert_eq!(header(&headers, "x-amz-date"), None);
    assert_eq!(
        echo_round_trip(&mut connection, "presigned").await,
        r#""presigned""#
    );
}

#[tokio::test]
async fn the_session_token_is_carried_and_signed() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    open(
        &server,
        &config_with(signer(SignatureMode::Headers, SECRET, Some(SESSION_TOKEN))),
    )
    .await
    .expect("a signed connect with a session token");
    let headers = next_connect_headers(&mut events).await;
    assert_eq!(
        header(&headers, "x-amz-security-token"),
        Some(SESSION_TOKEN)
    );
    let authorization = header(&headers, "authorization").unwrap_or_default();
    assert!(
        authorization.contains("SignedHeaders=host;x-amz-date;x-amz-security-token"),
        "{authorization}"
    );
    // A different token under the same signature is refused.
    let mut request = signed_request(&server, SignatureMode::Headers);
    request.headers_mut().insert(
        "x-amz-security-token",
        "another-token".parse().expect("a value"),
    );
    let refused = within("the handshake", tokio_tungstenite::connect_async(request)).await;
    assert!(
        matches!(&refused, Err(tungstenite::Error::Http(r)) if r.status() == 403),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_unsigned_connect_is_refused() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    assert_forbidden(open(&server, &ClientConfig::default()).await);
    let (status, reason) = next_rejection(&mut events).await;
    assert_eq!(status, 403);
    assert!(reason.contains("not signed"), "{reason}");
    // A bearer token is not a signature either.
    let config = ClientConfig {
        auth: Some(Secret::new("Bearer xyz")),
        ..ClientConfig::default()
    };
    assert_forbidden(open(&server, &config).await);
}

#[tokio::test]
async fn a_wrongly_signed_connect_is_refused() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    for mode in [SignatureMode::Headers, SignatureMode::Query] {
        let wrong_secret = config_with(signer(mode, "not-the-secret", None));
        assert_forbidden(open(&server, &wrong_secret).await);
        let (_, reason) = next_rejection(&mut events).await;
        assert!(reason.contains("does not match"), "{reason}");
    }
    let stranger = Signer::new(
        Credentials {
            access_key_id: "AKIDSTRANGER".into(),
            secret_access_key: Secret::new(SECRET),
            session_token: None,
        },
        SignatureMode::Headers,
    )
    .with_region("us-east-1");
    assert_forbidden(open(&server, &config_with(stranger)).await);
    let (_, reason) = next_rejection(&mut events).await;
    assert!(reason.contains("unknown access key"), "{reason}");
}

/// The status of a handshake signed at `time`.
async fn status_signed_at(server: &RunningServer, mode: SignatureMode, time: SystemTime) -> u16 {
    let mut request = server.ws_url().into_client_request().expect("a request");
    signer(mode, SECRET, None)
        .sign_at(&mut request, b"", time)
        .expect("signing");
    match within("the handshake", tokio_tungstenite::connect_async(request)).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the handshake failed without a status: {e}"),
    }
}

#[tokio::test]
async fn stale_and_expired_signatures_are_refused() {
    let server = spawn_server(iam_config()).await;
    let now = SystemTime::now();
    let minutes = |n: u64| Duration::from_secs(60 * n);
    // Headers: the signing time must be within 5 minutes of the server's clock.
    assert_eq!(
        status_signed_at(&server, SignatureMode::Headers, now - minutes(10)).await,
        403
    );
    assert_eq!(
        status_signed_at(&server, SignatureMode::Headers, now + minutes(10)).await,
        403
    );
    assert_eq!(
        status_signed_at(&server, SignatureMode::Headers, now - minutes(2)).await,
        101
    );
    // Presigned URLs: valid for their X-Amz-Expires (300 s).
    assert_eq!(
        status_signed_at(&server, SignatureMode::Query, now - minutes(4)).await,
        101
    );
    assert_eq!(
        status_signed_at(&server, SignatureMode::Query, now - minutes(6)).await,
        403
    );
}

#[tokio::test]
async fn iam_comes_before_the_api_key_and_the_token() {
    let server = spawn_server(ServeConfig {
        api_keys: vec![Secret::new("key-1")],
        tokens: vec![Secret::new("token-1")],
        ..iam_config()
    })
    .await;
    let presigned = || config_with(signer(SignatureMode::Query, SECRET, None));
    let status = |result: Result<client::Connection, ConnectError>| match result {
        Ok(_) => 101,
        Err(ConnectError::Rejected { status, .. }) => status,
        Err(e) => panic!("{e}"),
    };
    // Unsigned, with the right key and token: IAM refuses first.
    let unsigned = ClientConfig {
        api_key: Some(Secret::new("key-1")),
        auth: Some(Secret::new("Bearer token-1")),
        ..ClientConfig::default()
    };
    assert_eq!(status(open(&server, &unsigned).await), 403);
    // Signed, no key: the API key check refuses (403).
    assert_eq!(status(open(&server, &presigned()).await), 403);
    // Signed with the key, no token: the token check refuses (401).
    let keyed = ClientConfig {
        api_key: Some(Secret::new("key-1")),
        ..presigned()
    };
    assert_eq!(status(open(&server, &keyed).await), 401);
    let everything = ClientConfig {
        auth: Some(Secret::new("Bearer token-1")),
        ..keyed
    };
    assert_eq!(status(open(&server, &everything).await), 101);
}

#[tokio::test]
async fn log_lines_hold_no_signature_key_or_token() {
    let (log, capture) = LogSink::capture();
    let server = spawn_server(ServeConfig {
        log,
        ..iam_config()
    })
    .await;
    let mut events = server.events();
    let mut signatures = Vec::new();
    for mode in [SignatureMode::Headers, SignatureMode::Query] {
        let request = signed_request(&server, mode);
        let signed = format!(
            "{} {}",
            request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            request.uri()
        );
        let signature = signed
            .split("Signature=")
            .nth(1)
            .map(|rest| rest.chars().take(64).collect::<String>())
            .expect("a signature");
        signatures.push(signature);
        let (_ws, _) = within("the handshake", tokio_tungstenite::connect_async(request))
            .await
            .expect("a signed connect");
        next_connect_headers(&mut events).await;
    }
    assert_forbidden(
        open(
            &server,
            &config_with(signer(SignatureMode::Headers, "wrong", None)),
        )
        .await,
    );
    next_rejection(&mut events).await;
    let lines = capture.lines().join("\n");
    assert!(
        lines.contains("CONNECT") && lines.contains("REJECT"),
        "{lines}"
    );
    for secret in [SECRET, SESSION_TOKEN, ACCESS_KEY]
        .into_iter()
        .chain(signatures.iter().map(String::as_str))
    {
        assert!(!lines.contains(secret), "{secret} in {lines}");
    }
}

// ---- `wsprobe manage`, through the real binary -------------------------------------

/// A temporary home with AWS shared files: profile `dev` (with a session token, region in
/// the config file) and no `default`.
struct AwsHome {
    dir: tempfile::TempDir,
}

impl AwsHome {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let aws = dir.path().join(".aws");
        std::fs::create_dir_all(&aws).expect("creating .aws");
        std::fs::write(
            aws.join("credentials"),
            format!(
                "[dev]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET}\n\
                 aws_session_token = {SESSION_TOKEN}\n\n[stranger]\naws_access_key_id = AKIDX\n\
                 aws_secret_access_key = {SECRET}\n"
            ),
        )
        .expect("writing credentials");
        std::fs::write(aws.join("config"), "[profile dev]\nregion = eu-west-1\n")
            .expect("writing config");
        Self { dir }
    }

    /// The environment of a child: only these variables (no real HOME, no real AWS_*).
    fn env(&self) -> Vec<(String, String)> {
        let aws = self.dir.path().join(".aws");
        vec![
            ("HOME".into(), self.dir.path().display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                aws.join("credentials").display().to_string(),
            ),
            (
                "AWS_CONFIG_FILE".into(),
                aws.join("config").display().to_string(),
            ),
        ]
    }
}

/// What a run of the binary gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `wsprobe ARGS` with exactly the environment `env` (plus NO_COLOR).
async fn wsprobe(args: &[&str], env: &[(String, String)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        let output = assert_cmd::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
            .args(&args)
            .env_clear()
            .env("NO_COLOR", "1")
            .envs(env)
            .timeout(TIMEOUT)
            .output()
            .expect("running wsprobe");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the wsprobe task")
}

fn assert_no_secret(run: &Run) {
    for secret in [SECRET, SESSION_TOKEN] {
        assert!(
            !run.all().contains(secret),
            "a secret in the output:\n{}",
            run.all()
        );
    }
    assert!(!run.all().contains("Signature="), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_post_get_delete_without_signing() {
    let server = spawn_default_server().await;
    let (mut ws, id) = connect_and_id(&server).await;
    let url = server.ws_url();

    let run = wsprobe(
        &["manage", "post", &id, "hello from manage", "--url", &url],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.trim(), "200 OK");
    assert_eq!(next_text(&mut ws).await, "hello from manage");

    let connections = server.connections_url();
    let run = wsprobe(&["manage", "get", &id, "--url", &connections], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("200 OK"));
    let body: serde_json::Value =
        serde_json::from_str(lines.next().unwrap_or_default()).expect("a JSON body");
    assert!(body["connectedAt"].is_string(), "{body}");
    assert_eq!(body["identity"]["sourceIp"], "127.0.0.1");

    let run = wsprobe(&["manage", "delete", &id, "--url", &url], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.trim(), "204 No Content");
    assert_eq!(expect_close(&mut ws).await.0, 1000);

    let run = wsprobe(&["manage", "get", &id, "--url", &url], &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout.starts_with("410 Gone (GoneException)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(r#"{"message":"Gone"}"#),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_signs_with_a_profile_from_the_shared_files() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    let url = server.ws_url();
    let config = config_with(signer(SignatureMode::Headers, SECRET, None));
    let mut connection = open(&server, &config).await.expect("a signed connect");
    let id = next_connection_id(&mut events).await;
    let home = AwsHome::new();
    let env = home.env();

    // Unsigned: 403 ForbiddenException, exit 1.
    let run = wsprobe(&["manage", "post", &id, "unsigned", "--url", &url], &env).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout.starts_with("403 Forbidden (ForbiddenException)"),
        "{}",
        run.stdout
    );

    // Signed with profile `dev` (its region from the config file, its session token).
    let run = wsprobe(
        &[
            "manage",
            "post",
            &id,
            "signed",
            "--url",
            &url,
            "--sigv4",
            "--profile",
            "dev",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_no_secret(&run);
    let received = next_text_message(&mut connection, "the posted message").await;
    assert_eq!(received, "signed");

    // Presigned, the profile from AWS_PROFILE.
    let mut with_profile = env.clone();
    with_profile.push(("AWS_PROFILE".into(), "dev".into()));
    let run = wsprobe(
        &["manage", "get", &id, "--url", &url, "--sigv4-query"],
        &with_profile,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stdout.contains("connectedAt"), "{}", run.stdout);
    assert_no_secret(&run);

    // A key the server does not know.
    let run = wsprobe(
        &[
            "manage",
            "get",
            &id,
            "--url",
            &url,
            "--sigv4",
            "--profile",
            "stranger",
            "--region",
            "eu-west-1",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stdout.contains("ForbiddenException"), "{}", run.stdout);
    assert_no_secret(&run);

    let run = wsprobe(
        &[
            "manage",
            "delete",
            &id,
            "--url",
            &url,
            "--sigv4",
            "--profile",
            "dev",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.trim(), "204 No Content");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_explains_missing_credentials_and_regions() {
    let home = AwsHome::new();
    let env = home.env();
    // A profile no file has: exit 2, naming the profile and the files, no key.
    let run = wsprobe(
        &[
            "manage",
            "get",
            "abc=",
            "--url",
            "ws://127.0.0.1:9/dev",
            "--sigv4",
            "--profile",
            "prod",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains("`prod`") && run.stderr.contains("credentials"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run);

    // Keys from the environment but no region anywhere: exit 2, saying how to set one.
    let mut keys_only = vec![
        (
            "HOME".to_owned(),
            home.dir.path().join("nowhere").display().to_string(),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET.to_owned()),
    ];
    let run = wsprobe(
        &[
            "manage",
            "get",
            "abc=",
            "--url",
            "ws://127.0.0.1:9/dev",
            "--sigv4",
        ],
        &keys_only,
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("--region"), "{}", run.stderr);
    assert_no_secret(&run);

    // With a region, nothing listens on the port: exit 3.
    keys_only.push(("AWS_REGION".to_owned(), "eu-west-1".to_owned()));
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port")
        .local_addr()
        .expect("its address");
    let url = format!("ws://{closed}/dev");
    let run = wsprobe(
        &["manage", "get", "abc=", "--url", &url, "--sigv4"],
        &keys_only,
    )
    .await;
    assert_eq!(run.code, Some(3), "{}", run.all());
    assert_no_secret(&run);

    // --sigv4 would replace the user's Authorization header: a usage error.
    let run = wsprobe(
        &[
            "manage", "get", "abc=", "--url", &url, "--sigv4", "--auth", "Bearer x",
        ],
        &keys_only,
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("--sigv4-query"), "{}", run.stderr);

    // --region without --sigv4 is a usage error.
    let run = wsprobe(
        &[
            "manage",
            "get",
            "abc=",
            "--url",
            &url,
            "--region",
            "eu-west-1",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.all());
}

/// The environment of a child signing with keys from variables.
fn key_env() -> Vec<(String, String)> {
    vec![
        ("HOME".to_owned(), "/nonexistent-wsprobe-home".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET.to_owned()),
        ("AWS_SESSION_TOKEN".to_owned(), SESSION_TOKEN.to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_signs_the_upgrade() {
    let server = spawn_server(iam_config()).await;
    let url = server.ws_url();
    let env = key_env();
    for flag in ["--sigv4", "--sigv4-query"] {
        let run = wsprobe(
            &[
                "connect",
                &url,
                flag,
                "-x",
                r#"/send send "signed""#,
                "-w",
                "200ms",
            ],
            &env,
        )
        .await;
        assert_eq!(run.code, Some(0), "{flag}: {}", run.all());
        assert!(run.stdout.contains(r#""signed""#), "{}", run.stdout);
        assert_no_secret(&run);
    }
    let run = wsprobe(&["connect", &url, "-x", "hello", "-w", "200ms"], &env).await;
    assert_eq!(run.code, Some(3), "{}", run.all());
    assert!(run.stderr.contains("403"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_scripts_sign_the_upgrade_and_their_management_calls() {
    let server = spawn_server(iam_config()).await;
    let mut events = server.events();
    let config = config_with(signer(SignatureMode::Headers, SECRET, None));
    let mut target = open(&server, &config).await.expect("a signed connect");
    let id = next_connection_id(&mut events).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = dir.path().join("signed.wsp");
    std::fs::write(
        &script,
        "connect ${WS_URL}\nsend send \"hi\"\nexpect echo\n\
         post ${TARGET} from-the-script\nexpect status 200\n\
         get ${TARGET}\nexpect status 200\nexpect response json $.connectedAt exists\n",
    )
    .expect("writing the script");
    let script = script.display().to_string();
    let url = server.ws_url();
    let target_var = format!("TARGET={id}");
    for flag in ["--sigv4", "--sigv4-query"] {
        let run = wsprobe(
            &["run", &script, "--url", &url, "--var", &target_var, flag],
            &key_env(),
        )
        .await;
        assert_eq!(run.code, Some(0), "{flag}: {}", run.all());
        assert_no_secret(&run);
        let received = next_text_message(&mut target, "the posted message").await;
        assert_eq!(received, "from-the-script");
    }
    // Unsigned, the script cannot even connect.
    let run = wsprobe(
        &["run", &script, "--url", &url, "--var", &target_var],
        &key_env(),
    )
    .await;
    assert_ne!(run.code, Some(0), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_signs_every_connection() {
    let server = spawn_server(iam_config()).await;
    let url = server.ws_url();
    let env = key_env();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let report = dir.path().join("load.json");
    let report_arg = report.to_string_lossy().into_owned();
    let (url, report_arg) = (url.as_str(), report_arg.as_str());
    let load = move |flag: Option<&'static str>| {
        let mut args = vec![
            "load",
            url,
            "-c",
            "3",
            "-n",
            "30",
            "--no-progress",
            "--report-json",
            report_arg,
        ];
        args.extend(flag);
        args
    };
    for flag in ["--sigv4", "--sigv4-query"] {
        let run = wsprobe(&load(Some(flag)), &env).await;
        assert_eq!(run.code, Some(0), "{flag}: {}", run.all());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).expect("the report")).expect("JSON");
        assert_eq!(json["connections"]["opened"], 3, "{flag}: {json}");
        assert_eq!(json["messages"]["echoed"], 30, "{flag}: {json}");
        assert_no_secret(&run);
    }
    // Unsigned, every connection is refused with 403 and nothing opens: exit 3.
    let run = wsprobe(&load(None), &env).await;
    assert_eq!(run.code, Some(3), "{}", run.all());
    assert!(run.all().contains("403"), "{}", run.all());
}
