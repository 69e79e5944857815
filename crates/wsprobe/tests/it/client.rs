//! Integration tests: client (opening connections: headers, every way of failing, TLS) and
//! session (waiting, buffering, closing). A tiny WebSocket server written here, on
//! 127.0.0.1 port 0, records each handshake and plays a scripted part; nothing here
//! depends on `wsprobe serve`.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wsprobe::cli::ConnectionArgs;
use wsprobe_core::client::{self, ClientConfig, ConnectError, Connection, TlsProblem};
use wsprobe_core::session::{
    Ending, Frame, InboxLimits, Outgoing, Session, SessionError, WaitError,
};

use crate::support::{start_proxy, within};

/// Long enough for anything on loopback to happen; a broken test fails after it.
const PATIENCE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// The test server

/// Any stream the test server speaks WebSocket over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type ServerSocket = WebSocketStream<Box<dyn Io>>;

/// How the test server answers an upgrade request.
#[derive(Clone)]
enum Answer {
    /// 101, choosing this subprotocol if given.
    Accept { subprotocol: Option<&'static str> },
    /// This status with this body, and no upgrade.
    Reject { status: u16, body: &'static str },
}

/// A WebSocket server for one test. Dropping it stops it.
struct TestServer {
    addr: SocketAddr,
    /// The headers of each upgrade request, in order.
    handshakes: mpsc::UnboundedReceiver<HeaderMap>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    fn url(&self, scheme: &str) -> url::Url {
        url::Url::parse(&format!("{scheme}://{}/dev", self.addr)).unwrap()
    }

    async fn next_handshake(&mut self) -> HeaderMap {
        tokio::time::timeout(PATIENCE, self.handshakes.recv())
            .await
            .expect("the server saw no handshake in time")
            .expect("the server stopped")
    }
}

/// Starts a server: each connection gets TLS if `tls` is given, then `answer`, then (when
/// accepted) `handler`.
async fn start_server<H, F>(
    tls: Option<tokio_rustls::TlsAcceptor>,
    answer: Answer,
    handler: H,
) -> TestServer
where
    H: Fn(ServerSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (record, handshakes) = mpsc::unbounded_channel();
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tls, answer, handler, record) =
                (tls.clone(), answer.clone(), handler.clone(), record.clone());
            tokio::spawn(async move {
                let io: Box<dyn Io> = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => Box::new(stream),
                        // The client refused our certificate: nothing more to do.
                        Err(_) => return,
                    },
                    None => Box::new(tcp),
                };
                // The callback's signature is tungstenite's; its error type is large.
                #[allow(clippy::result_large_err)]
                let callback = |request: &Request, mut response: Response| {
                    let _ = record.send(request.headers().clone());
                    match answer {
                        Answer::Accept { subprotocol } => {
                            if let Some(chosen) = subprotocol {
                                response.headers_mut().insert(
                                    "sec-websocket-protocol",
                                    HeaderValue::from_static(chosen),
                                );
                            }
                            Ok(response)
                        }
                        Answer::Reject { status, body } => {
                            let mut rejection = ErrorResponse::new(Some(body.to_owned()));
                            *rejection.status_mut() = StatusCode::from_u16(status).unwrap();
                            rejection.headers_mut().insert(
                                "x-amzn-ErrorType",
                                HeaderValue::from_static("UnauthorizedException"),
                            );
                            Err(rejection)
                        }
                    }
                };
                if let Ok(socket) = tokio_tungstenite::accept_hdr_async(io, callback).await {
                    handler(socket).await;
                }
            });
        }
    });
    TestServer {
        addr,
        handshakes,
        task,
    }
}

/// Echoes text and binary messages until the client goes away.
async fn echo(mut socket: ServerSocket) {
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}

async fn plain_echo_server() -> TestServer {
    start_server(None, Answer::Accept { subprotocol: None }, echo).await
}

/// Sends `frames` right after the handshake, then keeps reading until the client leaves.
async fn scripted_server(frames: Vec<Message>) -> TestServer {
    start_server(
        None,
        Answer::Accept { subprotocol: None },
        move |mut socket| {
            let frames = frames.clone();
            async move {
                for frame in frames {
                    if socket.send(frame).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = socket.next().await {}
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Helpers on the client side

/// The shared connection options, parsed from flags exactly as the command line does.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    connection: ConnectionArgs,
}

fn config(flags: &[&str]) -> ClientConfig {
    let flags = Flags::try_parse_from(std::iter::once("wsprobe").chain(flags.iter().copied()))
        .expect("valid flags");
    crate::support::lowered_config(&flags.connection).expect("a valid configuration")
}

async fn connect(url: &url::Url, config: &ClientConfig) -> Result<Connection, ConnectError> {
    // connect_timeout bounds it already; this guards against a connect that ignores it.
    tokio::time::timeout(PATIENCE * 2, client::connect(url, config))
        .await
        .expect("connect ignored its own timeout")
}

fn text(message: &str) -> Message {
    Message::Text(message.into())
}

fn texts(frames: &[wsprobe_core::session::Incoming]) -> Vec<String> {
    frames.iter().map(|m| m.frame.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// Opening connections

#[tokio::test]
async fn handshake_carries_auth_api_key_headers_subprotocols_and_origin() {
    let mut server = start_server(
        None,
        Answer::Accept {
            subprotocol: Some("json.v1"),
        },
        echo,
    )
    .await;
    let config = config(&[
        "--auth",
        "Bearer tok-123",
        "--api-key",
        "key-456",
        "-H",
        "X-Trace: one",
        "-H",
        "X-Trace: two",
        "-H",
        "X-Tenant: acme",
        "-s",
        "chat.v2",
        "-s",
        "json.v1",
        "-o",
        "https://console.example.test",
    ]);
    let connection = connect(&server.url("ws"), &config).await.unwrap();
    assert_eq!(connection.status, 101);
    assert_eq!(connection.subprotocol.as_deref(), Some("json.v1"));
    assert!(connection.connect_time > Duration::ZERO);
    assert_eq!(connection.peer, server.addr);

    let headers = server.next_handshake().await;
    let values = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(values("authorization"), ["Bearer tok-123"]);
    assert_eq!(values("x-api-key"), ["key-456"]);
    assert_eq!(values("x-trace"), ["one", "two"]);
    assert_eq!(values("x-tenant"), ["acme"]);
    assert_eq!(values("sec-websocket-protocol"), ["chat.v2, json.v1"]);
    assert_eq!(values("origin"), ["https://console.example.test"]);
    assert_eq!(values("host"), [server.addr.to_string()]);
}

#[tokio::test]
async fn a_server_that_ignores_the_offered_subprotocols_is_reported() {
    // Browsers refuse such a server too: API Gateway stages must echo the header from $connect.
    let server = plain_echo_server().await;
    let error = connect(&server.url("ws"), &config(&["-s", "chat.v2", "-s", "json"]))
        .await
        .unwrap_err();
    match &error {
        ConnectError::Other { reason, .. } => assert!(
            reason.contains("accepted none of the offered subprotocols (chat.v2, json)"),
            "{reason}"
        ),
        other => panic!("expected Other, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subprotocol_that_was_not_offered_is_reported() {
    let server = start_server(
        None,
        Answer::Accept {
            subprotocol: Some("surprise"),
        },
        echo,
    )
    .await;
    let error = connect(&server.url("ws"), &config(&[])).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("chose a subprotocol although none was offered"),
        "{error}"
    );
    let error = connect(&server.url("ws"), &config(&["-s", "chat"]))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("chose a subprotocol that was not offered"),
        "{error}"
    );
}

#[tokio::test]
async fn an_extra_header_replaces_one_wsprobe_would_set() {
    let mut server = plain_echo_server().await;
    let config = config(&[
        "--auth",
        "Bearer from-flag",
        "-H",
        "Authorization: Bearer from-header",
        "-H",
        "Host: stage.example.test",
    ]);
    connect(&server.url("ws"), &config).await.unwrap();
    let headers = server.next_handshake().await;
    let all = |name: &str| headers.get_all(name).iter().count();
    assert_eq!(headers["authorization"], "Bearer from-header");
    assert_eq!(all("authorization"), 1);
    assert_eq!(headers["host"], "stage.example.test");
    assert_eq!(all("host"), 1);
}

#[tokio::test]
async fn a_refused_handshake_reports_status_and_body_but_no_secret() {
    let server = start_server(
        None,
        Answer::Reject {
            status: 401,
            body: "  {\"message\":\"Unauthorized\"}\n",
        },
        echo,
    )
    .await;
    let config = config(&["--auth", "Bearer sekrit-token", "--api-key", "sekrit-key"]);
    let error = connect(&server.url("ws"), &config).await.unwrap_err();
    match &error {
        ConnectError::Rejected {
            status,
            reason,
            body,
            headers,
        } => {
            assert_eq!(headers["x-amzn-errortype"], "UnauthorizedException");
            assert_eq!(*status, 401);
            assert_eq!(reason, "Unauthorized");
            assert_eq!(body, r#"{"message":"Unauthorized"}"#);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let shown = format!("{error} {error:?} {}", error.hint().unwrap_or_default());
    assert!(shown.contains("401"), "{shown}");
    assert!(!shown.contains("sekrit"), "a secret leaked: {shown}");
}

/// Answers one upgrade request with `parts`, written one at a time with a pause between
/// them. The pause is not synchronisation: it makes it likely that the parts arrive in
/// separate reads, which is the case under test (the test passes either way when the
/// client is right).
async fn raw_http_server(parts: Vec<&'static [u8]>) -> (url::Url, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        for part in parts {
            tcp.write_all(part).await.unwrap();
            tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    (url::Url::parse(&format!("ws://{addr}/dev")).unwrap(), task)
}

fn rejection(error: ConnectError) -> (u16, String, String) {
    match error {
        ConnectError::Rejected {
            status,
            reason,
            body,
            ..
        } => (status, reason, body),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rejection_body_sent_after_the_headers_is_read_whole() {
    let (url, server) = raw_http_server(vec![
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 23\r\n\r\n",
        b"{\"message\":",
        b"\"Forbidden\"}",
    ])
    .await;
    let (status, reason, body) = rejection(connect(&url, &config(&[])).await.unwrap_err());
    assert_eq!((status, reason.as_str()), (403, "Forbidden"));
    assert_eq!(body, r#"{"message":"Forbidden"}"#);
    server.await.unwrap();
}

#[tokio::test]
async fn a_chunked_rejection_body_is_decoded() {
    let (url, server) = raw_http_server(vec![
        b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"e\r\nInternal serve\r\n",
        b"8\r\nr error.\r\n0\r\n\r\n",
    ])
    .await;
    let (status, _, body) = rejection(connect(&url, &config(&[])).await.unwrap_err());
    assert_eq!(status, 500);
    assert_eq!(body, "Internal server error.");
    server.await.unwrap();
}

#[tokio::test]
async fn a_huge_rejection_body_is_cut_short() {
    static PAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let html = format!("<html>{}</html>", "x".repeat(10_000));
        format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{html}",
            html.len()
        )
        .into_bytes()
    });
    let (url, server) = raw_http_server(vec![page]).await;
    let (status, _, body) = rejection(connect(&url, &config(&[])).await.unwrap_err());
    assert_eq!(status, 502);
    assert!(body.starts_with("<html>xxx"), "{body}");
    assert!(body.ends_with("(10013 bytes in all)"), "{body}");
    assert!(body.len() < 2200);
    server.await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = url::Url::parse(&format!("ws://{addr}/dev")).unwrap();
    let error = connect(&url, &config(&[])).await.unwrap_err();
    assert!(
        matches!(&error, ConnectError::Refused { addr: shown } if *shown == addr.to_string()),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_a_dns_error() {
    // `.invalid` is reserved (RFC 6761): it never resolves, and resolvers answer at once.
    let url = client::parse_url("ws://nowhere.invalid/dev").unwrap();
    let direct = ClientConfig {
        // A proxy in the test environment would resolve the name instead of us.
        proxy: None,
        ..config(&["--connect-timeout", "5s"])
    };
    let error = connect(&url, &direct).await.unwrap_err();
    assert!(
        matches!(&error, ConnectError::Dns { host, .. } if host == "nowhere.invalid"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold the sockets, answering nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let url = url::Url::parse(&format!("ws://{addr}/dev")).unwrap();
    let started = std::time::Instant::now();
    let error = connect(&url, &config(&["--connect-timeout", "300ms"]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    holder.abort();
}

#[tokio::test]
async fn a_server_that_hangs_up_during_the_handshake_is_told_apart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hangup = tokio::spawn(async move {
        // Accept, read nothing, close.
        let (tcp, _) = listener.accept().await.unwrap();
        drop(tcp);
    });
    let url = url::Url::parse(&format!("ws://{addr}/dev")).unwrap();
    let error = connect(&url, &config(&[])).await.unwrap_err();
    assert!(matches!(error, ConnectError::Other { .. }), "{error:?}");
    hangup.await.unwrap();
}

#[tokio::test]
async fn bad_urls_are_refused_before_connecting() {
    for (text, needle) in [
        (
            "127.0.0.1:8080/dev",
            "ws://127.0.0.1:8080/dev or wss://127.0.0.1:8080/dev",
        ),
        (
            "https://abc.execute-api.eu-west-1.amazonaws.com/dev",
            "did you mean wss://",
        ),
        ("http://localhost/dev", "did you mean ws://"),
    ] {
        match client::parse_url(text) {
            Err(error @ ConnectError::InvalidUrl { .. }) => {
                assert!(error.to_string().contains(needle), "{error}")
            }
            other => panic!("{text}: expected InvalidUrl, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// TLS

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(contents.as_bytes())
            .unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `names`, as (certificate PEM, DER, key).
fn self_signed(names: &[&str]) -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()).into();
    (certified.cert.pem(), certified.cert.der().clone(), key)
}

fn tls_acceptor(
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<CertificateDer<'static>>,
) -> tokio_rustls::TlsAcceptor {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_roots {
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(vec![certificate], key).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn tls_echo_server(acceptor: tokio_rustls::TlsAcceptor) -> TestServer {
    start_server(Some(acceptor), Answer::Accept { subprotocol: None }, echo).await
}

/// Connects, then proves the connection works by a round trip.
async fn round_trip(url: &url::Url, config: &ClientConfig) {
    let mut session = Session::start(connect(url, config).await.unwrap());
    session
        .send(Outgoing::Text("over tls".into()))
        .await
        .unwrap();
    let echoed = session.next(PATIENCE).await.unwrap();
    assert_eq!(echoed.frame, Frame::Text("over tls".into()));
}

fn tls_reason(error: ConnectError) -> String {
    tls_failure(error).0
}

fn tls_failure(error: ConnectError) -> (String, TlsProblem, Option<String>) {
    let hint = error.hint();
    match error {
        ConnectError::Tls {
            reason, problem, ..
        } => (reason, problem, hint),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_self_signed_certificate_is_refused_then_trusted_with_cacert() {
    let pki = Pki::new();
    let (pem, der, key) = self_signed(&["localhost", "127.0.0.1"]);
    let cacert = pki.write("server.pem", &pem);
    let server = tls_echo_server(tls_acceptor(der, key, None)).await;
    let url = server.url("wss");

    let error = connect(&url, &config(&[])).await.unwrap_err();
    assert_eq!(error.cause(), "tls");
    let (reason, problem, hint) = tls_failure(error);
    assert!(reason.contains("unknown issuer"), "{reason}");
    assert!(reason.contains("self-signed"), "{reason}");
    assert_eq!(problem, TlsProblem::UnknownIssuer);
    assert!(hint.unwrap().contains("--cacert"));

    round_trip(&url, &config(&["--cacert", &cacert])).await;
    round_trip(&url, &config(&["-k"])).await;
}

/// A self-signed certificate marked `CA:TRUE`, as `openssl req -x509` makes it.
fn self_signed_ca(names: &[&str]) -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let certificate = params.self_signed(&key_pair).unwrap();
    let key = PrivatePkcs8KeyDer::from(key_pair.serialize_der()).into();
    (certificate.pem(), certificate.der().clone(), key)
}

#[tokio::test]
async fn a_self_signed_ca_true_certificate_listed_in_cacert_is_trusted_and_its_name_checked() {
    let pki = Pki::new();
    let (pem, der, key) = self_signed_ca(&["localhost", "127.0.0.1"]);
    let cacert = pki.write("server.pem", &pem);
    let server = tls_echo_server(tls_acceptor(der, key, None)).await;
    let url = server.url("wss");

    // Not listed: refused in plain words, with the fix.
    let error = connect(&url, &config(&[])).await.unwrap_err();
    let (reason, problem, hint) = tls_failure(error);
    assert_eq!(
        reason,
        "the server's certificate is a CA certificate (CA:TRUE, as `openssl req -x509` makes it) \
         that we do not trust"
    );
    assert_eq!(problem, TlsProblem::UnknownIssuer);
    assert!(hint.unwrap().contains("--cacert FILE"));

    // Listed: trusted, as curl, Python and Node trust it.
    round_trip(&url, &config(&["--cacert", &cacert])).await;

    // Another CA:TRUE certificate listed does not make this one trusted.
    let (other_pem, _, _) = self_signed_ca(&["localhost", "127.0.0.1"]);
    let other = pki.write("other.pem", &other_pem);
    let error = connect(&url, &config(&["--cacert", &other]))
        .await
        .unwrap_err();
    assert_eq!(tls_failure(error).1, TlsProblem::UnknownIssuer);
}

#[tokio::test]
async fn a_listed_ca_true_certificate_for_another_name_is_still_a_name_mismatch() {
    let pki = Pki::new();
    let (pem, der, key) = self_signed_ca(&["stage.example.test"]);
    let cacert = pki.write("server.pem", &pem);
    let server = tls_echo_server(tls_acceptor(der, key, None)).await;
    let error = connect(&server.url("wss"), &config(&["--cacert", &cacert]))
        .await
        .unwrap_err();
    let (reason, problem, hint) = tls_failure(error);
    assert!(
        reason.contains("not valid for the name `127.0.0.1` (it is for `stage.example.test`)"),
        "{reason}"
    );
    assert_eq!(problem, TlsProblem::NameMismatch);
    assert!(hint.is_some());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_name_mismatch() {
    let pki = Pki::new();
    let (pem, der, key) = self_signed(&["stage.example.test"]);
    let cacert = pki.write("server.pem", &pem);
    let server = tls_echo_server(tls_acceptor(der, key, None)).await;
    let error = connect(&server.url("wss"), &config(&["--cacert", &cacert]))
        .await
        .unwrap_err();
    let (reason, problem, _) = tls_failure(error);
    assert!(
        reason.contains("not valid for the name `127.0.0.1` (it is for `stage.example.test`)"),
        "{reason}"
    );
    assert_eq!(problem, TlsProblem::NameMismatch);
}

#[tokio::test]
async fn an_expired_certificate_says_so() {
    let pki = Pki::new();
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let certificate = params.self_signed(&key_pair).unwrap();
    let cacert = pki.write("expired.pem", &certificate.pem());
    let key = PrivatePkcs8KeyDer::from(key_pair.serialize_der()).into();
    let server = tls_echo_server(tls_acceptor(certificate.der().clone(), key, None)).await;
    let error = connect(&server.url("wss"), &config(&["--cacert", &cacert]))
        .await
        .unwrap_err();
    let (reason, problem, _) = tls_failure(error);
    assert!(reason.contains("expired on 2021-01-01"), "{reason}");
    assert_eq!(problem, TlsProblem::Expired);
}

#[tokio::test]
async fn wss_to_a_plain_endpoint_suggests_ws() {
    // A WebSocket server that hangs up on a request it cannot parse.
    let server = plain_echo_server().await;
    let error = connect(&server.url("wss"), &config(&["-k"]))
        .await
        .unwrap_err();
    let (reason, problem, hint) = tls_failure(error);
    assert!(reason.contains("plain ws://"), "{reason}");
    assert_eq!(problem, TlsProblem::NotTls);
    assert!(hint.unwrap().contains("ws:// instead of wss://"));

    // An HTTP server that answers the TLS hello with an HTTP error.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 16];
        let _ = tcp.read(&mut hello).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        // Hold the socket until the client gives up on it.
        let _ = tcp.read(&mut hello).await;
    });
    let url = url::Url::parse(&format!("wss://{addr}/dev")).unwrap();
    let reason = tls_reason(connect(&url, &config(&["-k"])).await.unwrap_err());
    assert!(reason.contains("not TLS"), "{reason}");
    http.abort();
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let (server_pem, server_der, server_key) = self_signed(&["127.0.0.1"]);
    let (client_pem, client_der, _) = {
        // The client's key must be written out too, so generate it here.
        let certified =
            rcgen::generate_simple_self_signed(vec!["wsprobe-client".to_owned()]).unwrap();
        let key_pem = certified.signing_key.serialize_pem();
        let client_key = pki.write("client.key", &key_pem);
        (
            certified.cert.pem(),
            certified.cert.der().clone(),
            client_key,
        )
    };
    let cacert = pki.write("server.pem", &server_pem);
    let client_cert = pki.write("client.pem", &client_pem);
    let client_key = pki.dir.path().join("client.key");
    let client_key = client_key.to_str().unwrap();
    let server = tls_echo_server(tls_acceptor(server_der, server_key, Some(client_der))).await;
    let url = server.url("wss");

    let error = connect(&url, &config(&["--cacert", &cacert]))
        .await
        .unwrap_err();
    let (reason, problem, hint) = tls_failure(error);
    assert!(reason.contains("requires a client certificate"), "{reason}");
    assert_eq!(problem, TlsProblem::ClientCertificate);
    assert!(hint.unwrap().contains("--cert and --key"));

    round_trip(
        &url,
        &config(&[
            "--cacert",
            &cacert,
            "--cert",
            &client_cert,
            "--key",
            client_key,
        ]),
    )
    .await;
}

#[test]
fn unreadable_tls_files_are_usage_errors() {
    let pki = Pki::new();
    let not_pem = pki.write("notes.txt", "hello\n");
    let missing = pki.dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    for flags in [
        vec!["--cacert", missing],
        vec!["--cacert", &not_pem],
        vec!["--cert", &not_pem, "--key", &not_pem],
    ] {
        let parsed =
            Flags::try_parse_from(std::iter::once("wsprobe").chain(flags.clone())).unwrap();
        match crate::support::lowered_config(&parsed.connection) {
            Err(wsprobe::Error::Usage(message)) => {
                assert!(
                    message.contains(".txt") || message.contains("missing.pem"),
                    "{message}"
                )
            }
            other => panic!("{flags:?}: expected a usage error, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sessions

async fn session_with(frames: Vec<Message>) -> (TestServer, Session) {
    let server = scripted_server(frames).await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    (server, Session::start(connection))
}

/// The inbox keeps the newest frames within its limits, drops the oldest, and says how
/// many it dropped; before, it kept everything a server sent.
#[tokio::test]
async fn a_full_inbox_drops_the_oldest_frames_and_counts_them() {
    let mut frames: Vec<Message> = (0..50).map(|i| text(&format!("{i:03}"))).collect();
    frames.push(Message::Close(None));
    let server = scripted_server(frames).await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    let limits = InboxLimits {
        frames: 10,
        bytes: 1 << 20,
    };
    let mut session = Session::start_bounded(connection, limits);
    let error = session
        .wait_for(PATIENCE, |m| m.frame.as_text() == Some("never"))
        .await
        .unwrap_err();
    let expected: Vec<String> = (41..50).map(|i| format!("{i:03}")).collect();
    let mut kept = texts(error.seen());
    assert_eq!(kept.pop().as_deref(), Some("<close 1005>"));
    assert_eq!(kept, expected);
    assert_eq!(error.dropped(), 41);
    assert_eq!(session.inbox().dropped(), 41);

    // By bytes: three-byte texts within seven bytes keep two (and the empty close).
    let frames = vec![text("aaa"), text("bbb"), text("ccc"), Message::Close(None)];
    let server = scripted_server(frames).await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    let limits = InboxLimits {
        frames: 100,
        bytes: 7,
    };
    let mut session = Session::start_bounded(connection, limits);
    let error = session.wait_for(PATIENCE, |_| false).await.unwrap_err();
    assert_eq!(texts(error.seen()), ["bbb", "ccc", "<close 1005>"]);
    assert_eq!(error.dropped(), 1);
}

/// The watch (what the prompt displays) is bounded like the inbox: a display that falls
/// behind keeps the newest frames and the ending, and counts what it lost.
#[tokio::test]
async fn a_watch_that_falls_behind_keeps_the_newest_frames_and_the_ending() {
    let mut frames: Vec<Message> = (0..20).map(|i| text(&format!("{i:02}"))).collect();
    frames.push(Message::Close(None));
    let server = scripted_server(frames).await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    let limits = InboxLimits {
        frames: 5,
        bytes: 1 << 20,
    };
    let (mut session, mut watch) = Session::start_watched(connection, limits);
    // The inbox sees the close: everything has been read.
    let _ = session.wait_for(PATIENCE, |_| false).await.unwrap_err();
    let mut shown = Vec::new();
    while let Some(incoming) = within("the watch", watch.recv()).await {
        shown.push(incoming.frame.to_string());
    }
    assert_eq!(shown, ["16", "17", "18", "19", "<close 1005>"]);
    assert_eq!(watch.dropped(), 16);
}

#[tokio::test]
async fn wait_for_skips_and_keeps_what_does_not_match() {
    let (_server, mut session) = session_with(vec![text("a"), text("b"), text("c")]).await;
    let found = session
        .wait_for(PATIENCE, |m| m.frame.as_text() == Some("c"))
        .await
        .unwrap();
    assert_eq!(found.frame, Frame::Text("c".into()));
    // What was skipped is still there, in arrival order, and next() is strict.
    assert_eq!(texts(&session.received_so_far()), ["a", "b"]);
    assert_eq!(
        session.next(PATIENCE).await.unwrap().frame,
        Frame::Text("a".into())
    );
    assert_eq!(
        session.next(PATIENCE).await.unwrap().frame,
        Frame::Text("b".into())
    );
    let error = session.next(Duration::from_millis(100)).await.unwrap_err();
    assert!(error.is_timeout());
    assert!(error.seen().is_empty());
}

#[tokio::test]
async fn a_timed_out_wait_shows_what_arrived() {
    let (_server, mut session) = session_with(vec![text("first"), text("second")]).await;
    // Wait until both have arrived, without consuming them.
    session
        .inbox()
        .wait_for(PATIENCE, |m| m.frame.as_text() == Some("second"))
        .await
        .unwrap();
    let error = session
        .wait_for(Duration::from_millis(150), |m| {
            m.frame.as_text() == Some("third")
        })
        .await
        .unwrap_err();
    match &error {
        WaitError::Timeout { after, seen, .. } => {
            assert_eq!(*after, Duration::from_millis(150));
            assert_eq!(texts(seen), ["first"]);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(error.to_string().contains("150ms"), "{error}");
}

#[tokio::test]
async fn a_close_frame_surfaces_with_code_and_reason() {
    let close = Message::Close(Some(CloseFrame {
        code: 4001.into(),
        reason: "session expired".into(),
    }));
    let (_server, mut session) = session_with(vec![text("last words"), close]).await;
    // A wait for something else fails as soon as the connection has ended, not at its deadline.
    let started = std::time::Instant::now();
    let error = session
        .wait_for(PATIENCE, |m| m.frame.as_text() == Some("never"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < PATIENCE);
    let expected_ending = Ending::Closed {
        code: 4001,
        reason: "session expired".into(),
    };
    match &error {
        WaitError::Closed { ending, seen, .. } => {
            assert_eq!(*ending, expected_ending);
            assert_eq!(texts(seen), ["last words", "<close 4001 session expired>"]);
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(session.is_closed());
    assert_eq!(session.ending(), Some(&expected_ending));
    assert_eq!(
        session.next(PATIENCE).await.unwrap().frame,
        Frame::Text("last words".into())
    );
    assert_eq!(
        session.next(PATIENCE).await.unwrap().frame,
        Frame::Close {
            code: 4001,
            reason: "session expired".into()
        }
    );
    assert!(matches!(
        session.next(PATIENCE).await,
        Err(WaitError::Closed { .. })
    ));
    assert_eq!(
        session.send(Outgoing::Text("too late".into())).await,
        Err(SessionError::Closed)
    );
}

#[tokio::test]
async fn an_abrupt_drop_surfaces_as_dropped() {
    let server = start_server(
        None,
        Answer::Accept { subprotocol: None },
        |socket| async move {
            // Drop the socket without a close frame: TCP just ends.
            drop(socket);
        },
    )
    .await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    let mut session = Session::start(connection);
    let ended = session.next(PATIENCE).await.unwrap();
    assert!(matches!(ended.frame, Frame::Dropped { .. }), "{ended:?}");
    assert_eq!(session.ending().map(Ending::code), Some(1006));
}

#[tokio::test]
async fn pings_get_pongs_both_ways() {
    let (report, mut reports) = mpsc::unbounded_channel();
    let server = start_server(
        None,
        Answer::Accept { subprotocol: None },
        move |mut socket| {
            let report = report.clone();
            async move {
                socket
                    .send(Message::Ping(b"from-server".to_vec().into()))
                    .await
                    .unwrap();
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Pong(payload) = message {
                        let _ = report.send(payload.to_vec());
                    }
                }
            }
        },
    )
    .await;
    let mut session = Session::start(connect(&server.url("ws"), &config(&[])).await.unwrap());
    // The server's ping shows up (already answered), and its pong reaches the server.
    let ping = session.next(PATIENCE).await.unwrap();
    assert_eq!(ping.frame, Frame::Ping(b"from-server".to_vec()));
    let answered = tokio::time::timeout(PATIENCE, reports.recv())
        .await
        .unwrap();
    assert_eq!(answered, Some(b"from-server".to_vec()));
    // Our ping is answered by the server's WebSocket layer.
    session
        .send(Outgoing::Ping(b"hello?".to_vec()))
        .await
        .unwrap();
    let pong = session
        .wait_for(PATIENCE, |m| matches!(m.frame, Frame::Pong(_)))
        .await
        .unwrap();
    assert_eq!(pong.frame, Frame::Pong(b"hello?".to_vec()));
}

/// A server that never reads: once the socket is full, even the close frame cannot be
/// written, and `close` must still give up after its `within`.
#[tokio::test]
async fn closing_gives_up_in_time_when_the_server_stopped_reading() {
    let server = start_server(
        None,
        Answer::Accept { subprotocol: None },
        |socket| async move {
            std::future::pending::<()>().await;
            drop(socket);
        },
    )
    .await;
    let session = Session::start(connect(&server.url("ws"), &config(&[])).await.unwrap());
    let big = "x".repeat(1024 * 1024);
    // Fill the socket until a send stalls (a timed-out send stays queued).
    within("the socket to fill", async {
        while tokio::time::timeout(
            Duration::from_millis(200),
            session.send(Outgoing::Text(big.clone())),
        )
        .await
        .is_ok()
        {}
    })
    .await;
    let ending = within(
        "close to give up",
        session.close(1000, "done", Duration::from_millis(200)),
    )
    .await;
    assert_eq!(ending, None);
}

#[tokio::test]
async fn closing_politely_returns_the_servers_answer() {
    let server = plain_echo_server().await;
    let session = Session::start(connect(&server.url("ws"), &config(&[])).await.unwrap());
    let ending = session.close(1000, "done", PATIENCE).await;
    assert_eq!(
        ending,
        Some(Ending::Closed {
            code: 1000,
            reason: "done".into()
        })
    );
}

#[tokio::test]
async fn a_watch_sees_everything_while_waits_consume() {
    let server = plain_echo_server().await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    let (session, mut watch) = Session::start_watched(connection, InboxLimits::default());
    let (sender, mut inbox) = session.split();
    let other_sender = sender.clone();
    sender.send(Outgoing::Text("one".into())).await.unwrap();
    other_sender
        .send(Outgoing::Binary(vec![1, 2, 3]))
        .await
        .unwrap();
    let binary = inbox
        .wait_for(PATIENCE, |m| matches!(m.frame, Frame::Binary(_)))
        .await
        .unwrap();
    assert_eq!(binary.frame, Frame::Binary(vec![1, 2, 3]));
    // The watch saw both, in order, including the one the wait consumed.
    let first = tokio::time::timeout(PATIENCE, watch.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(PATIENCE, watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.frame, Frame::Text("one".into()));
    assert_eq!(second.frame, binary.frame);
    assert!(first.at <= second.at);
    // The inbox still holds the text nobody consumed.
    assert_eq!(
        inbox.recv().await.map(|m| m.frame),
        Some(Frame::Text("one".into()))
    );
}

#[tokio::test]
async fn expect_silence_passes_quietly_and_fails_on_a_message() {
    let (_server, mut session) = session_with(vec![text("chatter")]).await;
    let noisy = session.inbox().expect_silence(PATIENCE).await;
    assert_eq!(
        noisy.map_err(|m| m.frame),
        Err(Frame::Text("chatter".into()))
    );
    // The message that broke the silence is still there for the next wait.
    assert_eq!(
        session.next(PATIENCE).await.unwrap().frame,
        Frame::Text("chatter".into())
    );
    assert_eq!(
        session
            .inbox()
            .expect_silence(Duration::from_millis(100))
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn invalid_frames_are_refused_before_sending() {
    let server = plain_echo_server().await;
    let session = Session::start(connect(&server.url("ws"), &config(&[])).await.unwrap());
    let error = session
        .send(Outgoing::Close(Some((1006, "no".into()))))
        .await
        .unwrap_err();
    assert!(matches!(error, SessionError::Invalid(_)), "{error:?}");
    let error = session
        .send(Outgoing::Ping(vec![0; 200]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("125"), "{error}");
    // The connection is still fine.
    session
        .send(Outgoing::Text("still here".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_client_answers_a_servers_close() {
    let (report, mut reports) = mpsc::unbounded_channel();
    let server = start_server(
        None,
        Answer::Accept { subprotocol: None },
        move |mut socket| {
            let report = report.clone();
            async move {
                let close = CloseFrame {
                    code: 1001.into(),
                    reason: "going away".into(),
                };
                socket.send(Message::Close(Some(close))).await.unwrap();
                // tungstenite hands the peer's answer to our close over as a Close message.
                while let Some(Ok(message)) = socket.next().await {
                    let _ = report.send(message);
                }
            }
        },
    )
    .await;
    let connection = connect(&server.url("ws"), &config(&[])).await.unwrap();
    let (session, mut watch) = Session::start_watched(connection, InboxLimits::default());
    let closing = tokio::time::timeout(PATIENCE, watch.recv()).await.unwrap();
    assert_eq!(
        closing.map(|m| m.frame),
        Some(Frame::Close {
            code: 1001,
            reason: "going away".into()
        })
    );
    // The ending frame is the watch's last.
    assert_eq!(
        tokio::time::timeout(PATIENCE, watch.recv()).await.unwrap(),
        None
    );
    let answer = tokio::time::timeout(PATIENCE, reports.recv())
        .await
        .unwrap();
    match answer {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected the client's close answer, got {other:?}"),
    }
    drop(session);
}

#[tokio::test]
async fn dropping_a_session_ends_its_connection() {
    let (report, mut reports) = mpsc::unbounded_channel();
    let server = start_server(
        None,
        Answer::Accept { subprotocol: None },
        move |mut socket| {
            let report = report.clone();
            async move {
                while let Some(Ok(_)) = socket.next().await {}
                let _ = report.send(());
            }
        },
    )
    .await;
    let session = Session::start(connect(&server.url("ws"), &config(&[])).await.unwrap());
    drop(session);
    let ended = tokio::time::timeout(PATIENCE, reports.recv()).await;
    assert_eq!(ended, Ok(Some(())), "the server still sees the connection");
}

#[tokio::test]
async fn a_message_over_the_size_limit_drops_the_connection() {
    let (_server, mut session) = {
        let server = scripted_server(vec![text(&"x".repeat(4096))]).await;
        let mut config = config(&[]);
        config.websocket.max_message_size = Some(1024);
        config.websocket.max_frame_size = Some(1024);
        let connection = connect(&server.url("ws"), &config).await.unwrap();
        (server, Session::start(connection))
    };
    let ended = session.next(PATIENCE).await.unwrap();
    match ended.frame {
        Frame::Dropped { reason } => assert!(reason.contains("too large"), "{reason}"),
        other => panic!("expected Dropped, got {other:?}"),
    }
}

#[tokio::test]
async fn host_names_and_ipv6_loopback_work() {
    let server = plain_echo_server().await;
    let by_name = url::Url::parse(&format!("ws://localhost:{}/dev", server.addr.port())).unwrap();
    round_trip(&by_name, &config(&[])).await;

    // Some containers have no IPv6 at all; there is nothing to test then.
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here: skipping the [::1] half");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let socket = tokio_tungstenite::accept_async(Box::new(tcp) as Box<dyn Io>)
            .await
            .unwrap();
        echo(socket).await;
    });
    let url = client::parse_url(&format!("ws://[::1]:{}/dev", addr.port())).unwrap();
    round_trip(&url, &config(&[])).await;
    server.abort();
}

#[tokio::test]
async fn small_buffers_still_carry_large_messages() {
    let server = plain_echo_server().await;
    let config = config(&[]).small_buffers();
    let mut session = Session::start(connect(&server.url("ws"), &config).await.unwrap());
    let big = "0123456789".repeat(10_000);
    session.send(Outgoing::Text(big.clone())).await.unwrap();
    let echoed = session.next(PATIENCE).await.unwrap();
    assert_eq!(echoed.frame, Frame::Text(big));
}

// ---------------------------------------------------------------------------------------
// Proxies

fn through_proxy(
    config: ClientConfig,
    proxy: SocketAddr,
    credentials: Option<&str>,
) -> ClientConfig {
    let server = client::ProxyServer {
        host: proxy.ip().to_string(),
        port: proxy.port(),
        credentials: credentials.map(wsprobe_core::secret::Secret::new),
    };
    ClientConfig {
        proxy: Some(client::ProxySettings {
            plain: Some(server.clone()),
            secure: Some(server),
            no_proxy: Vec::new(),
            // The servers under test are on loopback too.
            direct_loopback: false,
        }),
        ..config
    }
}

#[tokio::test]
async fn ws_and_wss_go_through_an_http_proxy() {
    let (proxy, mut requests, proxy_task) = start_proxy(None).await;

    let plain = plain_echo_server().await;
    let with_proxy = through_proxy(config(&[]), proxy, Some("alice:s3cret"));
    let connection = connect(&plain.url("ws"), &with_proxy).await.unwrap();
    assert_eq!(connection.peer, proxy);
    drop(connection);
    let seen = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen.request_line,
        format!("CONNECT {} HTTP/1.1", plain.addr)
    );
    // base64("alice:s3cret")
    assert_eq!(
        seen.proxy_authorization.as_deref(),
        Some("Basic YWxpY2U6czNjcmV0")
    );

    // TLS runs end to end inside the tunnel: the certificate is the server's.
    let pki = Pki::new();
    let (pem, der, key) = self_signed(&["127.0.0.1"]);
    let cacert = pki.write("server.pem", &pem);
    let secure = tls_echo_server(tls_acceptor(der, key, None)).await;
    let with_proxy = through_proxy(config(&["--cacert", &cacert]), proxy, None);
    round_trip(&secure.url("wss"), &with_proxy).await;
    let seen = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen.request_line,
        format!("CONNECT {} HTTP/1.1", secure.addr)
    );
    assert_eq!(seen.proxy_authorization, None);
    proxy_task.abort();
}

#[tokio::test]
async fn a_proxy_that_refuses_the_tunnel_is_reported_without_credentials() {
    let (proxy, _requests, proxy_task) =
        start_proxy(Some("HTTP/1.1 407 Proxy Authentication Required")).await;
    let server = plain_echo_server().await;
    let with_proxy = through_proxy(config(&[]), proxy, Some("alice:s3cret"));
    let error = connect(&server.url("ws"), &with_proxy).await.unwrap_err();
    assert_eq!(error.cause(), "proxy");
    let shown = error.to_string();
    assert!(shown.contains(&format!("proxy {proxy} failed")), "{shown}");
    assert!(
        shown.contains("407 Proxy Authentication Required"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    proxy_task.abort();
}

#[test]
fn loopback_never_goes_through_an_environment_proxy() {
    let (settings, _) = client::ProxySettings::from_lookup(|name| {
        (name == "all_proxy").then(|| "http://proxy.example:3128".to_owned())
    });
    let settings = settings.unwrap();
    let local = client::parse_url("ws://127.0.0.1:8080/dev").unwrap();
    assert_eq!(settings.for_url(&local), None);
    let remote = client::parse_url("wss://abc.execute-api.eu-west-1.amazonaws.com/dev").unwrap();
    assert!(settings.for_url(&remote).is_some());
}

mod management_http {
    //! The HTTP client used for `@connections` calls, against the real `serve`.

    use tokio_tungstenite::tungstenite::http::{HeaderMap, Method};
    use wsprobe_core::client::ClientConfig;
    use wsprobe_core::client::http::request;

    use crate::support::{connect_and_id, expect_close, next_text, spawn_default_server, within};

    #[tokio::test]
    async fn post_get_and_delete_reach_the_connection_then_it_is_gone() {
        let server = spawn_default_server().await;
        let (mut ws, id) = connect_and_id(&server).await;
        let url = url::Url::parse(&format!("{}/{id}", server.connections_url())).unwrap();
        let config = ClientConfig::default();

        let posted = request(Method::POST, &url, HeaderMap::new(), "pushed", &config)
            .await
            .expect("POST answered");
        assert_eq!((posted.status, posted.text()), (200, String::new()));
        assert_eq!(next_text(&mut ws).await, "pushed");

        let got = request(Method::GET, &url, HeaderMap::new(), "", &config)
            .await
            .expect("GET answered");
        assert!(got.is_success());
        let info: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON body");
        assert!(
            info["connectedAt"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{info}"
        );
        assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");

        let deleted = request(Method::DELETE, &url, HeaderMap::new(), "", &config)
            .await
            .expect("DELETE answered");
        assert_eq!(deleted.status, 204);
        assert_eq!(within("close", expect_close(&mut ws)).await.0, 1000);

        let gone = request(Method::POST, &url, HeaderMap::new(), "late", &config)
            .await
            .expect("POST answered");
        assert_eq!(gone.status, 410);
        assert_eq!(gone.reason, "Gone");
        assert_eq!(gone.aws_error_type(), Some("GoneException"));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/dev/@connections/x")).unwrap();
        let error = request(
            Method::GET,
            &url,
            HeaderMap::new(),
            "",
            &ClientConfig::default(),
        )
        .await
        .expect_err("nothing listens");
        assert!(
            matches!(error, wsprobe_core::client::ConnectError::Refused { .. }),
            "{error:?}"
        );
    }
}
