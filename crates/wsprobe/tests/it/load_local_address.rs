//! Integration tests: `load --local-address`, the real binary against the real `serve` on
//! 127.0.0.1, binding its connections to other loopback addresses (all of 127.0.0.0/8 is
//! this machine's on Linux), to an address that is not this machine's (192.0.2.1, from
//! TEST-NET-1), and to one of the other family than the server's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use wsprobe_serve::ServeEvent;

use super::{args, assert_clean, count, describe, load, load_report, stdout};
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_take_the_local_addresses_in_turn() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "4",
        "-n",
        "20",
        "--connect-rate",
        "1000/s",
        "--local-address",
        "127.0.0.2",
        "--local-address",
        "127.0.0.3",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "opened"), 4, "{report}");
    assert_clean(&report, 20);
    let mut sources: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for _ in 0..4 {
        let source = support::wait_event(&mut events, |event| match event {
            ServeEvent::Connected { source_ip, .. } => Some(*source_ip),
            _ => None,
        })
        .await;
        *sources.entry(source).or_default() += 1;
    }
    let expected: BTreeMap<IpAddr, u32> = [
        ("127.0.0.2".parse().unwrap(), 2),
        ("127.0.0.3".parse().unwrap(), 2),
    ]
    .into();
    assert_eq!(sources, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_is_not_this_machines_is_counted_by_cause_with_a_hint() {
    let server = support::spawn_default_server().await;
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "2",
        "-n",
        "4",
        "--connect-rate",
        "1000/s",
        "--local-address",
        "192.0.2.1",
    ]))
    .await;
    // No connection opened: load exits 3, as on any connect failure of every connection.
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "failed"), 2, "{report}");
    assert_eq!(
        report["connections"]["failures"]["address_not_available"], 2,
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot bind to 192.0.2.1"), "{stderr}");
    assert!(
        stderr.contains("hint: some connections failed with EADDRNOTAVAIL: a --local-address"),
        "{stderr}"
    );
    assert!(
        stdout(&output).contains("address_not_available"),
        "the table counts it: {}",
        describe(&output)
    );

    // Beside a usable address, half the connections open, and the run goes on with them.
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "4",
        "-n",
        "8",
        "--connect-rate",
        "1000/s",
        "--local-address",
        "192.0.2.1",
        "--local-address",
        "127.0.0.2",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "opened"), 2, "{report}");
    assert_eq!(
        report["connections"]["failures"]["address_not_available"], 2,
        "{report}"
    );
    assert_clean(&report, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_address_of_the_other_family_is_a_usage_error() {
    let output = load(args(&[
        "ws://[::1]:9/dev",
        "-n",
        "1",
        "--local-address",
        "127.0.0.2",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--local-address 127.0.0.2 is IPv4, and ::1 is IPv6"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_proxy_the_local_address_binds_the_connection_to_the_proxy() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let (proxy, mut requests, _proxy_task) = support::start_proxy(None).await;
    let proxy_url = format!("http://{proxy}");
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "2",
        "-n",
        "4",
        "--connect-rate",
        "1000/s",
        "--proxy",
        &proxy_url,
        "--local-address",
        "127.0.0.3",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_clean(&report, 4);
    for _ in 0..2 {
        let request = support::within("a CONNECT", requests.recv())
            .await
            .expect("the proxy saw a CONNECT");
        assert_eq!(request.peer.ip().to_string(), "127.0.0.3", "{request:?}");
        // The proxy opened its own connection to the server, from where it chose.
        let source = support::wait_event(&mut events, |event| match event {
            ServeEvent::Connected { source_ip, .. } => Some(*source_ip),
            _ => None,
        })
        .await;
        assert_eq!(source.to_string(), "127.0.0.1");
    }

    // A source address that cannot be bound fails the connection to the proxy, counted
    // by its cause, not as the proxy's failure.
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "1",
        "-n",
        "1",
        "--proxy",
        &proxy_url,
        "--local-address",
        "192.0.2.1",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_eq!(
        report["connections"]["failures"]["address_not_available"], 1,
        "{report}"
    );
}
