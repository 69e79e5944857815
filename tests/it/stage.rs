//! Integration tests: real stages run locally — `serve --tls-self-signed` with `--cacert`,
//! `--proxy` through an HTTP CONNECT proxy written here, stage profiles (`wsprobe.toml`),
//! and Lambda integrations served by a small HTTP endpoint written here.

use clap::Parser;
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
