//! Shared test helpers: starting the server on port 0, talking WebSocket and raw HTTP to
//! it, waiting for its events, and running the real binary. Every wait has a timeout
//! ([`TIMEOUT`]), so a broken test fails instead of hanging.

#![allow(dead_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsprobe_serve::{RunningServer, ServeConfig, ServeEvent};

/// How long any single wait in a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A client connection as the tests use it.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts a server with `config` on 127.0.0.1, port 0.
pub async fn spawn_server(config: ServeConfig) -> RunningServer {
    wsprobe_serve::spawn(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("the server starts on port 0")
}

/// Starts a server with the default configuration (stage `dev`, sample echo app).
pub async fn spawn_default_server() -> RunningServer {
    spawn_server(ServeConfig::default()).await
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, as PEM.
pub struct TestCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCertificate {
    pub fn new() -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("a self-signed certificate");
        Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        }
    }

    /// Writes the certificate and key into `dir` and returns their paths.
    pub fn write_to(&self, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &self.cert_pem).expect("writing the certificate");
        std::fs::write(&key, &self.key_pem).expect("writing the key");
        (cert, key)
    }
}

/// Starts a `wss://` server with `config` and a fresh self-signed certificate, which is
/// returned so clients can trust it.
pub async fn spawn_tls_server(mut config: ServeConfig) -> (RunningServer, TestCertificate) {
    let certificate = TestCertificate::new();
    config.tls = Some(
        ServeConfig::tls_from_pem(
            certificate.cert_pem.as_bytes(),
            certificate.key_pem.as_bytes(),
        )
        .expect("a TLS configuration"),
    );
    (spawn_server(config).await, certificate)
}

/// Opens a `wss://` connection to a server that uses `certificate`.
pub async fn connect_tls(
    url: &str,
    certificate: &TestCertificate,
) -> Result<TlsWs, tungstenite::Error> {
    use std::sync::Arc;
    let request = url.into_client_request()?;
    let host = request.uri().host().expect("a host").to_owned();
    let port = request.uri().port_u16().expect("a port");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut certificate.cert_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a root certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from(host.clone()).expect("a server name");
    within("the TLS connection", async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let tls = connector.connect(name, tcp).await?;
        let (ws, _) = tokio_tungstenite::client_async(request, tls).await?;
        Ok(ws)
    })
    .await
}

/// A client connection over TLS.
pub type TlsWs = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Fails the test if `future` takes longer than [`TIMEOUT`].
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// Opens a WebSocket connection, with extra handshake headers; the error tells why not
/// (`tungstenite::Error::Http(response)` for a refused handshake).
pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().expect("header name");
        request
            .headers_mut()
            .append(name, HeaderValue::from_str(value).expect("header value"));
    }
    let (ws, _) = within("the handshake", tokio_tungstenite::connect_async(request)).await?;
    Ok(ws)
}

/// Opens a WebSocket connection that must succeed.
pub async fn connect(url: &str) -> Ws {
    connect_with(url, &[]).await
}

/// Opens a WebSocket connection with headers that must succeed.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Ws {
    match try_connect(url, headers).await {
        Ok(ws) => ws,
        Err(e) => panic!("connecting to {url} failed: {e}"),
    }
}

/// The HTTP status of a handshake that must be refused, and the body sent with it.
pub async fn refused(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match try_connect(url, headers).await {
        Ok(_) => panic!("the handshake to {url} succeeded; a refusal was expected"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("the handshake failed without an HTTP status: {e}"),
    }
}

/// Sends a text message.
pub async fn send_text(ws: &mut Ws, text: &str) {
    within("a send", ws.send(Message::text(text)))
        .await
        .expect("sending a text message");
}

/// The next data or close message (pings and pongs are skipped).
pub async fn next_message(ws: &mut Ws) -> Message {
    within("a message", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                Some(Err(e)) => panic!("reading a message failed: {e}"),
                None => panic!("the connection ended while a message was expected"),
            }
        }
    })
    .await
}

/// The next message, which must be text.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_message(ws).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns its code and reason.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    within("a close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the connection failed before a close frame: {e}"),
                None => panic!("the connection ended without a close frame"),
            }
        }
    })
    .await
}

/// Waits for the first event that `pick` accepts and returns what it made of it.
pub async fn wait_event<T>(
    events: &mut broadcast::Receiver<ServeEvent>,
    mut pick: impl FnMut(&ServeEvent) -> Option<T>,
) -> T {
    within("a server event", async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("the event stream ended"),
            }
        }
    })
    .await
}

/// The connection id of the next CONNECT.
pub async fn next_connection_id(events: &mut broadcast::Receiver<ServeEvent>) -> String {
    wait_event(events, |event| match event {
        ServeEvent::Connected { connection_id, .. } => Some(connection_id.clone()),
        _ => None,
    })
    .await
}

/// Opens a connection and returns it with its connection id.
pub async fn connect_and_id(server: &RunningServer) -> (Ws, String) {
    let mut events = server.events();
    let ws = connect(&server.ws_url()).await;
    let id = next_connection_id(&mut events).await;
    (ws, id)
}

/// The code of the DISCONNECT of `connection_id`.
pub async fn disconnect_code(
    events: &mut broadcast::Receiver<ServeEvent>,
    connection_id: &str,
) -> u16 {
    wait_event(events, |event| match event {
        ServeEvent::Disconnected {
            connection_id: id,
            code,
            ..
        } if id == connection_id => Some(*code),
        _ => None,
    })
    .await
}

/// An HTTP response as the raw client read it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request (with `Connection: close`) and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    raw_http(addr, &bytes).await
}

/// Sends raw bytes and parses what comes back as an HTTP response (read to the end of
/// the connection). Write errors are ignored: a server may answer before reading all.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    within("an HTTP response", async {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&chunk[..n]);
                    if response_complete(&raw) {
                        break;
                    }
                }
                Err(_) if !raw.is_empty() => break,
                Err(e) => panic!("reading the HTTP response failed: {e}"),
            }
        }
        parse_response(&raw)
    })
    .await
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Whether a response with a Content-Length has arrived whole (so keep-alive servers
/// need not close first).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = head_end(raw) else {
        return false;
    };
    let response = parse_response(raw);
    match response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(length) => raw.len() >= end + length,
        None => false,
    }
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = head_end(raw).unwrap_or_else(|| {
        panic!(
            "no complete HTTP response head in {:?}",
            String::from_utf8_lossy(raw)
        )
    });
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[end..].to_vec(),
    }
}

/// The path of `/{stage}/@connections/{id}` on `server`.
pub fn connection_path(server: &RunningServer, id: &str) -> String {
    format!("/{}/@connections/{id}", server.state().config().stage)
}

/// The real `wsprobe` binary running `serve`, with the URLs it printed. Killed on drop.
pub struct ServeProcess {
    pub child: Child,
    pub ws_url: String,
    pub connections_url: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ServeProcess {
    /// Runs `wsprobe serve --listen 127.0.0.1:0 ARGS…` and reads the two URL lines.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`ServeProcess::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_configured(args, env, |_| {})
    }

    /// Like [`ServeProcess::start`], with the open-file limit (`RLIMIT_NOFILE`) set to
    /// `soft` and `hard` before it starts.
    #[cfg(unix)]
    pub fn start_with_open_file_limit(args: &[&str], soft: u64, hard: u64) -> Self {
        use std::os::unix::process::CommandExt as _;
        Self::start_configured(args, &[], |command| {
            // SAFETY: setrlimit is async-signal-safe, and nothing else runs between fork
            // and exec here.
            unsafe {
                command.pre_exec(move || {
                    use nix::sys::resource::{Resource, setrlimit};
                    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(std::io::Error::from)
                });
            }
        })
    }

    fn start_configured(
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsprobe"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("WSPROBE_SERVE_TOKENS")
            .env_remove("WSPROBE_SERVE_API_KEYS")
            .env_remove("WSPROBE_SERVE_IAM_KEYS");
        for (name, value) in env {
            command.env(name, value);
        }
        configure(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running wsprobe serve");
        let lines = line_channel(child.stdout.take().expect("piped stdout"));
        let mut process = Self {
            child,
            ws_url: String::new(),
            connections_url: String::new(),
            lines,
        };
        process.ws_url = process.next_line();
        process.connections_url = process.next_line();
        assert!(process.ws_url.starts_with("ws"), "{}", process.ws_url);
        process
    }

    /// The next line of its standard output.
    pub fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("a line from wsprobe serve within the timeout")
    }

    /// Sends a signal (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for wsprobe") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wsprobe serve did not exit within {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test proxy saw of one CONNECT request.
#[derive(Debug)]
pub struct ProxiedRequest {
    /// The client's address, as the proxy saw it.
    pub peer: SocketAddr,
    pub request_line: String,
    pub proxy_authorization: Option<String>,
}

/// An HTTP CONNECT proxy on loopback. With `refuse`, it answers with that status line
/// instead of opening the tunnel.
pub async fn start_proxy(
    refuse: Option<&'static str>,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<ProxiedRequest>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (record, requests) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((mut client, peer)) = listener.accept().await {
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
                let _ = record.send(ProxiedRequest {
                    peer,
                    request_line,
                    proxy_authorization,
                });
                if let Some(status_line) = refuse {
                    let answer = format!("{status_line}\r\nContent-Length: 0\r\n\r\n");
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
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
    (addr, requests, task)
}

/// The client configuration of connection flags, lowered as the binary lowers them.
pub fn lowered_config(
    args: &wsprobe::cli::ConnectionArgs,
) -> Result<wsprobe_core::client::ClientConfig, wsprobe::Error> {
    let lowered = wsprobe::cli::lower::connection(args, None)?;
    wsprobe::cli::lower::client_config(&lowered.options)
}

// ---------------------------------------------------------------------------------------
// A Lambda Invoke-API stand-in

/// What the Invoke-API stand-in's handler does with one event.
#[derive(Clone, Debug)]
pub enum LambdaReply {
    /// The handler returns this value (a proxy response, an authorizer policy, …).
    Return(serde_json::Value),
    /// The handler throws: the runtime answers `{"errorMessage": …, "errorType": …}` with
    /// `X-Amz-Function-Error: Unhandled`, as the Runtime Interface Emulator does.
    Throw { message: String, kind: String },
    /// The handler never returns (the caller's timeout must end the wait).
    Hang,
}

impl LambdaReply {
    /// A proxy response with this status code and nothing else.
    pub fn status(code: u16) -> Self {
        Self::Return(serde_json::json!({ "statusCode": code }))
    }

    /// A handler that throws `message` (as `Error`).
    pub fn throw(message: &str) -> Self {
        Self::Throw {
            message: message.to_owned(),
            kind: "Error".to_owned(),
        }
    }
}

type BoxedHandler = std::sync::Arc<
    dyn Fn(
            serde_json::Value,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = LambdaReply> + Send>>
        + Send
        + Sync,
>;

/// A Lambda function behind the Invoke API path of the Runtime Interface Emulator
/// (`POST /2015-03-31/functions/function/invocations`), on loopback port 0. Like the
/// emulator (one runtime, one invocation at a time), it refuses an invocation that
/// arrives while another is running with 400, and counts the refusals. Every event it
/// accepts is recorded for [`InvokeApi::next_event`].
pub struct InvokeApi {
    /// The invocation URL, for `--integration` / `--authorizer`.
    pub url: String,
    events: mpsc::UnboundedReceiver<serde_json::Value>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InvokeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InvokeApi {
    /// Starts the function with `handler`, which is called once per accepted invocation,
    /// in one runtime (one invocation at a time).
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = LambdaReply> + Send + 'static,
    {
        Self::start_with_runtimes(1, handler).await
    }

    /// Like [`InvokeApi::start`], with `runtimes` invocations at a time.
    pub async fn start_with_runtimes<F, Fut>(runtimes: usize, handler: F) -> Self
    where
        F: Fn(serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = LambdaReply> + Send + 'static,
    {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let handler: BoxedHandler = Arc::new(move |event| Box::pin(handler(event)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!(
            "http://{}/2015-03-31/functions/function/invocations",
            listener.local_addr().expect("an address")
        );
        let (record, events) = mpsc::unbounded_channel();
        let refused = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(Runtimes {
            in_flight: AtomicUsize::new(0),
            count: runtimes,
        });
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(invoke_api_request(
                    socket,
                    handler.clone(),
                    record.clone(),
                    busy.clone(),
                    counter.clone(),
                ));
            }
        });
        Self {
            url,
            events,
            refused,
            task,
        }
    }

    /// The next event the function accepted.
    pub async fn next_event(&mut self) -> serde_json::Value {
        within("an event at the Lambda", self.events.recv())
            .await
            .expect("the Lambda stand-in is running")
    }

    /// Whether an accepted event is waiting (without waiting for one).
    pub fn try_next_event(&mut self) -> Option<serde_json::Value> {
        self.events.try_recv().ok()
    }

    /// How many invocations were refused because another was running.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The runtimes of an [`InvokeApi`]: how many invocations run, and how many may.
struct Runtimes {
    in_flight: std::sync::atomic::AtomicUsize,
    count: usize,
}

/// Answers one invocation on `socket` (one request per connection, as serve sends them).
async fn invoke_api_request(
    mut socket: TcpStream,
    handler: BoxedHandler,
    record: mpsc::UnboundedSender<serde_json::Value>,
    busy: std::sync::Arc<Runtimes>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let Some(body) = read_http_body(&mut socket).await else {
        return;
    };
    let respond = |status: &str, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if busy.in_flight.fetch_add(1, Ordering::SeqCst) >= busy.count {
        busy.in_flight.fetch_sub(1, Ordering::SeqCst);
        refused.fetch_add(1, Ordering::SeqCst);
        let answer = respond(
            "400 Bad Request",
            "",
            r#"{"errorMessage":"the runtime is busy with another invocation","errorType":"InvalidRequest"}"#,
        );
        let _ = socket.write_all(answer.as_bytes()).await;
        return;
    }
    let event: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => panic!("the Lambda stand-in got an event that is not JSON: {e}"),
    };
    let _ = record.send(event.clone());
    let reply = handler(event).await;
    // Free before answering: the caller may send the next invocation as soon as it has
    // read this answer.
    busy.in_flight.fetch_sub(1, Ordering::SeqCst);
    let answer = match reply {
        LambdaReply::Return(value) => respond("200 OK", "", &value.to_string()),
        LambdaReply::Throw { message, kind } => respond(
            "200 OK",
            "X-Amz-Function-Error: Unhandled\r\n",
            &serde_json::json!({ "errorMessage": message, "errorType": kind }).to_string(),
        ),
        // A hung handler does not hold the runtime here, so a test can go on after the
        // caller's timeout; the connection stays open until the caller gives up.
        LambdaReply::Hang => {
            let mut sink = [0u8; 64];
            while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            return;
        }
    };
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Reads one HTTP/1.1 request with a `Content-Length` body and returns the body; `None`
/// when the peer went away first.
async fn read_http_body(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let (head_end, length) = loop {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
        if let Some(end) = head_end(&data) {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end, length);
        }
    };
    while data.len() < head_end + length {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
    }
    Some(data[head_end..head_end + length].to_vec())
}

/// `wsprobe serve ARGS…` lowered as the binary lowers it, started in-process on port 0
/// (quiet unless `ARGS` ask for a log).
pub async fn serve_flags(args: &[&str]) -> RunningServer {
    spawn_server(serve_config(args)).await
}

/// `wsprobe serve --quiet ARGS…` as a configuration; panics on a usage error.
pub fn serve_config(args: &[&str]) -> ServeConfig {
    use clap::Parser;
    let argv = ["wsprobe", "serve", "--quiet"].iter().chain(args.iter());
    let cli = wsprobe::cli::Cli::try_parse_from(argv).expect("valid serve flags");
    let wsprobe::cli::Command::Serve(serve) = cli.command else {
        panic!("not serve")
    };
    match wsprobe::cli::lower::serve_config(&serve) {
        Ok(config) => config,
        Err(e) => panic!("serve {args:?}: {e}"),
    }
}

/// Sends `requests` one after the other on one HTTP/1.1 keep-alive connection, reading
/// each response (by its `Content-Length`; none for 204) before writing the next, and
/// returns the responses read. Stops early when the server closes the connection.
pub async fn http_exchanges(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<HttpResponse> {
    within("HTTP responses on one connection", async {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        let mut responses = Vec::new();
        let mut raw: Vec<u8> = Vec::new();
        for request in requests {
            if stream.write_all(request).await.is_err() {
                break;
            }
            let mut chunk = [0u8; 8192];
            let length = loop {
                if let Some(end) = head_end(&raw) {
                    let head = parse_response(&raw[..end]);
                    let body = if head.status == 204 {
                        0
                    } else {
                        head.header("content-length")
                            .and_then(|v| v.parse::<usize>().ok())
                            .expect("a response with a Content-Length")
                    };
                    if raw.len() >= end + body {
                        break end + body;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break 0,
                    Ok(n) => raw.extend_from_slice(&chunk[..n]),
                }
            };
            if length == 0 {
                break;
            }
            responses.push(parse_response(&raw[..length]));
            raw.drain(..length);
        }
        responses
    })
    .await
}

/// An HTTP/1.1 keep-alive request (no `Connection: close`) with a `Content-Length` body.
pub fn keep_alive_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A WebSocket server on 127.0.0.1:0 that completes each handshake, reads the first
/// message, and then never reads (nor writes) again, holding the connection open: what a
/// client sends next piles up until the socket buffers are full (kept small here, 4 KiB
/// to receive). Returns its `ws://` URL and a channel that yields once per connection when
/// its first message has been read.
pub async fn spawn_deaf_server() -> (String, mpsc::UnboundedReceiver<()>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("binding port 0");
    let listener = socket.listen(64).expect("listening");
    let url = format!("ws://{}/", listener.local_addr().expect("the address"));
    let (first_message, first_messages) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let first_message = first_message.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                if let Some(Ok(_)) = ws.next().await {
                    let _ = first_message.send(());
                }
                // Deaf from now on, but the connection stays open.
                std::future::pending::<()>().await;
                drop(ws);
            });
        }
    });
    (url, first_messages)
}

/// A WebSocket server on 127.0.0.1:0 that answers each connection's first message with
/// one text message of `size` bytes, then reads until the client's close frame. Returns
/// its `ws://` URL and a channel that yields, per connection, the client's close code
/// (`None` when the connection ended without a close frame).
pub async fn spawn_oversized_server(size: usize) -> (String, mpsc::UnboundedReceiver<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/", listener.local_addr().expect("the address"));
    let (close_codes, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let close_codes = close_codes.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                if !matches!(stream.next().await, Some(Ok(_))) {
                    return;
                }
                // Sent while reading: the client may stop reading the message halfway.
                tokio::spawn(async move {
                    let _ = sink.send(Message::text("x".repeat(size))).await;
                    std::future::pending::<()>().await;
                    drop(sink);
                });
                let code = close_code(&mut stream).await;
                let _ = close_codes.send(code);
            });
        }
    });
    (url, closes)
}

/// A WebSocket server on 127.0.0.1:0 that reads everything a client sends (and drops
/// it) while sending it 100-byte text messages as fast as it can, until the connection
/// ends. Returns its `ws://` URL.
pub async fn spawn_flood_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/", listener.local_addr().expect("the address"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
                let flood = Message::text("f".repeat(100));
                while sink.send(flood.clone()).await.is_ok() {}
            });
        }
    });
    url
}

/// A WebSocket server on 127.0.0.1:0 that sends each connection `count` text messages of
/// `size` bytes as fast as the client reads them, then reports on the returned channel
/// (the burst is written), waits for the test to send on `release`, and then sends the
/// text `done` and keeps reading until the client goes. Returns its `ws://` URL.
pub async fn spawn_burst_server(
    count: usize,
    size: usize,
) -> (
    String,
    mpsc::UnboundedReceiver<()>,
    mpsc::UnboundedSender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/", listener.local_addr().expect("the address"));
    let (written, bursts) = mpsc::unbounded_channel();
    let (release, mut released) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let message = Message::text("b".repeat(size));
        for _ in 0..count {
            if sink.feed(message.clone()).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        let _ = written.send(());
        if released.recv().await.is_some() {
            let _ = sink.send(Message::text("done")).await;
        }
        std::future::pending::<()>().await;
    });
    (url, bursts, release)
}

/// A WebSocket server on 127.0.0.1:0 that answers each connection's first message with
/// a frame of a reserved opcode (a protocol violation), then reads until the client's
/// close frame. Returns its `ws://` URL and a channel that yields, per connection, the
/// client's close code (`None` when the connection ended without a close frame).
pub async fn spawn_protocol_violating_server() -> (String, mpsc::UnboundedReceiver<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/", listener.local_addr().expect("the address"));
    let (close_codes, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let close_codes = close_codes.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                if !matches!(ws.next().await, Some(Ok(_))) {
                    return;
                }
                // FIN, opcode 0x3 (reserved), no payload: written under tungstenite.
                if ws.get_mut().write_all(&[0x83, 0x00]).await.is_err() {
                    return;
                }
                let code = close_code(&mut ws).await;
                let _ = close_codes.send(code);
            });
        }
    });
    (url, closes)
}

/// What [`spawn_hostile_server`] sends: a window title, a screen clear, a clipboard
/// write, a right-to-left override.
pub const HOSTILE_TEXT: &str = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07evil\u{202e}txt";
/// The reason of [`spawn_hostile_server`]'s close frame: a cursor-position query, whose
/// answer a terminal would type into the prompt.
pub const HOSTILE_REASON: &str = "bye\x1b[6n";

/// A WebSocket server on 127.0.0.1:0 that answers each connection's first text message
/// with [`HOSTILE_TEXT`], then closes with code 4000 and [`HOSTILE_REASON`]. Returns its
/// `ws://` URL.
pub async fn spawn_hostile_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/dev", listener.local_addr().expect("the address"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => break,
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                }
                let _ = ws.send(Message::text(HOSTILE_TEXT)).await;
                let close = tungstenite::protocol::CloseFrame {
                    code: 4000.into(),
                    reason: HOSTILE_REASON.into(),
                };
                let _ = ws.send(Message::Close(Some(close))).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    url
}

/// A WebSocket server on 127.0.0.1:0 that echoes the first `echoes` messages of each
/// connection whole, then dies: it drops the TCP connection without a close frame.
/// Returns its `ws://` URL.
pub async fn spawn_dying_server(echoes: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/", listener.local_addr().expect("the address"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut echoed = 0;
                while echoed < echoes {
                    match ws.next().await {
                        Some(Ok(message @ Message::Text(_))) => {
                            if ws.send(message).await.is_err() {
                                return;
                            }
                            echoed += 1;
                        }
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                }
                // Gone, without a close frame. Dropping a socket with unread data sends a
                // reset, which throws away echoes still in the send queue: end with a FIN
                // after them, then wait for the client to go (reading what it still sends).
                let mut tcp = ws.into_inner();
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 4096];
                let drained = async { while matches!(tcp.read(&mut sink).await, Ok(1..)) {} };
                let _ = tokio::time::timeout(TIMEOUT, drained).await;
            });
        }
    });
    url
}

// ---------------------------------------------------------------------------------------
// A Lambda Runtime API for real handlers under awslambdaric

/// The Invoke API in front and the Lambda Runtime API behind, as the Runtime Interface
/// Emulator has them: `serve` POSTs an event to [`LambdaRuntime::url`], a real runtime
/// client (`python3 -m awslambdaric module.handler` with `AWS_LAMBDA_RUNTIME_API` set to
/// [`LambdaRuntime::runtime_api`]) takes it from `/2018-06-01/runtime/invocation/next`
/// and posts the result back, which answers the POST. One invocation at a time: an
/// overlapping one gets 400, as from the emulator.
pub struct LambdaRuntime {
    pub url: String,
    pub runtime_api: String,
    events: mpsc::UnboundedReceiver<serde_json::Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LambdaRuntime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An invocation on its way to the runtime client: its id and event.
type Pending = (String, axum::body::Bytes);

/// What the runtime client reported: a function error, and the payload.
type Outcome = (bool, axum::body::Bytes);

struct RuntimeBridge {
    queue: mpsc::UnboundedSender<Pending>,
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    waiting:
        std::sync::Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<Outcome>>>,
    busy: std::sync::atomic::AtomicBool,
    count: std::sync::atomic::AtomicU64,
    record: mpsc::UnboundedSender<serde_json::Value>,
}

impl LambdaRuntime {
    pub async fn start() -> Self {
        use axum::routing::{get, post};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let (queue, next) = mpsc::unbounded_channel();
        let (record, events) = mpsc::unbounded_channel();
        let bridge = Arc::new(RuntimeBridge {
            queue,
            next: tokio::sync::Mutex::new(next),
            waiting: Default::default(),
            busy: Default::default(),
            count: Default::default(),
            record,
        });
        let router = axum::Router::new()
            .route(
                "/2015-03-31/functions/function/invocations",
                post(runtime_invoke),
            )
            .route("/2018-06-01/runtime/invocation/next", get(runtime_next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(runtime_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(runtime_error),
            )
            .route("/2018-06-01/runtime/init/error", post(runtime_init_error))
            .with_state(bridge);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{addr}/2015-03-31/functions/function/invocations"),
            runtime_api: addr.to_string(),
            events,
            task,
        }
    }

    /// The next event a handler was given.
    pub async fn next_event(&mut self) -> serde_json::Value {
        within("an event at the runtime", self.events.recv())
            .await
            .expect("the runtime bridge is running")
    }
}

async fn runtime_invoke(
    axum::extract::State(bridge): axum::extract::State<std::sync::Arc<RuntimeBridge>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    if bridge.busy.swap(true, Ordering::SeqCst) {
        return (axum::http::StatusCode::BAD_REQUEST, "busy").into_response();
    }
    if let Ok(event) = serde_json::from_slice(&body) {
        let _ = bridge.record.send(event);
    }
    let id = format!("invocation-{}", bridge.count.fetch_add(1, Ordering::SeqCst));
    let (done, outcome) = tokio::sync::oneshot::channel();
    bridge
        .waiting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), done);
    let _ = bridge.queue.send((id, body));
    let outcome = outcome.await;
    bridge.busy.store(false, Ordering::SeqCst);
    match outcome {
        Ok((false, payload)) => (axum::http::StatusCode::OK, payload).into_response(),
        Ok((true, payload)) => (
            axum::http::StatusCode::OK,
            [("X-Amz-Function-Error", "Unhandled")],
            payload,
        )
            .into_response(),
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

async fn runtime_next(
    axum::extract::State(bridge): axum::extract::State<std::sync::Arc<RuntimeBridge>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some((id, event)) = bridge.next.lock().await.recv().await else {
        return axum::http::StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() + 30_000)
        .to_string();
    (
        [
            ("Lambda-Runtime-Aws-Request-Id", id),
            ("Lambda-Runtime-Deadline-Ms", deadline),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:000000000000:function:local".to_owned(),
            ),
            ("Content-Type", "application/json".to_owned()),
        ],
        event,
    )
        .into_response()
}

fn runtime_report(bridge: &RuntimeBridge, id: &str, outcome: Outcome) -> axum::http::StatusCode {
    let done = bridge
        .waiting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    match done {
        Some(done) => {
            let _ = done.send(outcome);
            axum::http::StatusCode::ACCEPTED
        }
        None => axum::http::StatusCode::BAD_REQUEST,
    }
}

async fn runtime_response(
    axum::extract::State(bridge): axum::extract::State<std::sync::Arc<RuntimeBridge>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    runtime_report(&bridge, &id, (false, body))
}

async fn runtime_error(
    axum::extract::State(bridge): axum::extract::State<std::sync::Arc<RuntimeBridge>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    runtime_report(&bridge, &id, (true, body))
}

async fn runtime_init_error(body: axum::body::Bytes) -> axum::http::StatusCode {
    eprintln!(
        "the handler failed to initialise: {}",
        String::from_utf8_lossy(&body)
    );
    axum::http::StatusCode::ACCEPTED
}

/// Why real Python handlers cannot run here (`python3` with `awslambdaric` and `boto3`),
/// or `None` when they can.
pub fn python_runtime_missing() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import awslambdaric, boto3"])
        .output();
    match probe {
        Ok(output) if output.status.success() => None,
        // The traceback's last line says which module is missing.
        Ok(output) => Some(format!(
            "python3 cannot import awslambdaric and boto3 ({})",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
        )),
        Err(e) => Some(format!("python3 cannot be run: {e}")),
    }
}

/// A Python handler under the real runtime client (`python3 -m awslambdaric
/// MODULE.handler` in `dir`), fed by `runtime`. Killed on drop.
pub struct PythonHandler(Child);

impl PythonHandler {
    pub fn start(
        dir: &std::path::Path,
        module: &str,
        runtime: &LambdaRuntime,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new("python3");
        command
            .args(["-m", "awslambdaric", &format!("{module}.handler")])
            .current_dir(dir)
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.runtime_api)
            // Any credentials do: serve checks signatures only with --iam-key.
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        Self(command.spawn().expect("running python3 -m awslambdaric"))
    }
}

impl Drop for PythonHandler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads until the peer's close frame and returns its code (`None`: no code, or no close
/// frame before the end).
async fn close_code<S>(stream: &mut S) -> Option<u16>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Close(frame) = message {
            return frame.map(|frame| u16::from(frame.code));
        }
    }
    None
}

/// What a stage whose app posts the body back as is would answer to `text`: the `body`
/// of a route-tagged message, a string unquoted (`Hello`), anything else as JSON; `None`
/// for a message without a body.
pub fn raw_body_answer(text: &str) -> Option<String> {
    let body = serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("body")
        .cloned()?;
    Some(match body {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    })
}

/// What the going-away server does with a handshake (see [`spawn_going_away_server`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Accept, read what comes, and close with 1001 "Going away" after the hold.
    Accept,
    /// Refuse with this HTTP status.
    Refuse(u16),
}

/// What the going-away server saw, in order.
#[derive(Clone, Debug)]
pub enum Seen {
    /// Handshake number `n` (from 0) arrived at `at`, with these headers (names in lower
    /// case), and was answered as `answer`.
    Handshake {
        n: usize,
        at: std::time::Instant,
        headers: Vec<(String, String)>,
        answer: Handshake,
    },
    /// Connection `n` sent this text.
    Text { n: usize, text: String },
    /// The server sent its 1001 close on connection `n`.
    Closed { n: usize, at: std::time::Instant },
}

/// A WebSocket server on 127.0.0.1:0 that behaves like an API Gateway stage at its
/// limits: handshake `n` is answered as `plan[n]` (and, after the plan, the listener is
/// closed, so further attempts are refused at TCP); an accepted connection is closed with
/// 1001 "Going away" after `hold`. Everything is reported on the returned channel.
pub async fn spawn_going_away_server(
    plan: Vec<Handshake>,
    hold: Duration,
) -> (String, mpsc::UnboundedReceiver<Seen>) {
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::http::StatusCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/dev", listener.local_addr().expect("the address"));
    let (seen, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (n, answer) in plan.into_iter().enumerate() {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let task = async move {
                let seen_in_callback = seen.clone();
                // tungstenite's callback type returns its (large) error response as is.
                #[allow(clippy::result_large_err)]
                let callback = move |request: &Request, response: Response| {
                    let headers = request
                        .headers()
                        .iter()
                        .map(|(name, value)| {
                            (
                                name.as_str().to_owned(),
                                String::from_utf8_lossy(value.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    let _ = seen_in_callback.send(Seen::Handshake {
                        n,
                        at: std::time::Instant::now(),
                        headers,
                        answer,
                    });
                    match answer {
                        Handshake::Accept => Ok(response),
                        Handshake::Refuse(status) => {
                            let mut refusal = ErrorResponse::new(Some("refused".to_owned()));
                            *refusal.status_mut() =
                                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                            Err(refusal)
                        }
                    }
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                let reader_seen = seen.clone();
                let reader = tokio::spawn(async move {
                    while let Some(Ok(message)) = stream.next().await {
                        if let Message::Text(text) = message {
                            let _ = reader_seen.send(Seen::Text {
                                n,
                                text: text.as_str().to_owned(),
                            });
                        }
                    }
                });
                tokio::time::sleep(hold).await;
                let close = Message::Close(Some(CloseFrame {
                    code: 1001.into(),
                    reason: "Going away".into(),
                }));
                let _ = seen.send(Seen::Closed {
                    n,
                    at: std::time::Instant::now(),
                });
                let _ = sink.send(close).await;
                let _ = tokio::time::timeout(TIMEOUT, reader).await;
            };
            tokio::spawn(task);
        }
        // The plan is over: the listener goes, and connecting is refused.
    });
    (url, events)
}

/// Everything the going-away server reported so far.
pub fn seen_so_far(events: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(event);
    }
    all
}

/// The lines `output` prints, as they come, read on a thread of their own (so a test can
/// wait for one with a deadline).
pub fn line_channel(
    output: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Reads `lines` until one contains `needle`, within [`TIMEOUT`]; everything read so far.
#[track_caller]
pub fn read_until(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut seen = String::new();
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push_str(&format!("{line}\n")),
            Err(e) => panic!("no {needle:?} ({e}) in:\n{seen}"),
        }
    }
    seen
}
