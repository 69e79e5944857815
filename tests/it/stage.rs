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
