//! Integration tests: soak load (`load --reconnect`, `--keepalive`), the real binary
//! against the real `serve` with millisecond limits (`idle_timeout`,
//! `max_connection_duration`) on port 0, and against the going-away server of the test
//! support, which refuses a planned handshake.

use std::time::Duration;

use serde_json::Value;
use wsprobe_serve::ServeConfig;

use super::{args, count, describe, load, load_report};
use crate::support::{self, Handshake, TIMEOUT};

/// Runs `wsprobe load merge FILES… --report-json OUT` and returns the merged report.
async fn merge(files: &[std::path::PathBuf], out: &std::path::Path) -> Value {
    let mut line = args(&["load", "merge"]);
    line.extend(files.iter().map(|p| p.to_str().unwrap().to_owned()));
    line.extend(args(&["--report-json", out.to_str().unwrap()]));
    let output = support::within(
        "wsprobe load merge",
        tokio::task::spawn_blocking(move || {
            assert_cmd::Command::cargo_bin("wsprobe")
                .expect("the wsprobe binary")
                .args(&line)
                .timeout(TIMEOUT)
                .output()
                .expect("running wsprobe load merge")
        }),
    )
    .await
    .expect("the runner thread");
    assert!(output.status.success(), "{}", describe(&output));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// A `serve` that closes every connection with 1001 after `max_age`, and idle ones after
/// `idle`.
async fn limited_server(max_age: Duration, idle: Duration) -> wsprobe_serve::RunningServer {
    support::spawn_server(ServeConfig {
        max_connection_duration: max_age,
        idle_timeout: idle,
        ..ServeConfig::default()
    })
    .await
}

fn number(report: &Value, path: &[&str]) -> f64 {
    let mut value = report;
    for key in path {
        value = &value[*key];
    }
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{} in {report}", path.join(".")))
}

/// Every connection reopened through 1-second limits, about three times in four
/// seconds, after 1001; the pings in flight at a close are lost to the reconnect, not
/// errors, and the rate holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_keeps_the_rate_through_one_second_connection_limits() {
    let server = limited_server(Duration::from_secs(1), Duration::from_secs(60)).await;
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "4",
        "--rate",
        "200/s",
        "-d",
        "4s",
        "--reconnect",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let reconnects = count(&report, "connections", "reconnects");
    assert!((8..=20).contains(&reconnects), "{reconnects} in {report}");
    assert_eq!(
        report["connections"]["reconnects_by_code"]["1001"].as_u64(),
        Some(reconnects),
        "{report}"
    );
    assert_eq!(count(&report, "reconnect_ms", "count"), reconnects);
    assert!(number(&report, &["reconnect_ms", "min"]) > 0.0);
    assert!(number(&report, &["connections", "disconnected_s"]) > 0.0);
    assert_eq!(count(&report, "connections", "dropped"), 0, "{report}");
    assert_eq!(count(&report, "messages", "errors"), 0, "{report}");
    // Every ping is accounted for: echoed, or in flight when its connection closed.
    assert_eq!(
        count(&report, "messages", "echoed") + count(&report, "messages", "lost_to_reconnect"),
        count(&report, "messages", "sent"),
        "{report}"
    );
    let achieved = number(&report, &["achieved_rate"]);
    assert!(achieved >= 0.9 * 200.0, "{achieved}/s in {report}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("Reconnects"), "{table}");
    assert!(table.contains("Reconnect "), "{table}");
}

/// Without `--reconnect`, the same limit drops every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_the_connections_are_dropped() {
    let server = limited_server(Duration::from_secs(1), Duration::from_secs(60)).await;
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "3",
        "--rate",
        "60/s",
        "-d",
        "2s",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 3, "{report}");
    assert_eq!(
        report["connections"]["close_codes"]["1001"].as_u64(),
        Some(3)
    );
    assert_eq!(count(&report, "connections", "reconnects"), 0);
    assert_eq!(count(&report, "messages", "lost_to_reconnect"), 0);
}

/// `--keepalive-message` keeps connections past an idle timeout that pings this rare
/// would not beat, to the end of `-d`; without it they are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_messages_keep_connections_past_the_idle_timeout() {
    let server = limited_server(Duration::from_secs(60), Duration::from_millis(600)).await;
    let line = |keepalive: bool| {
        let mut line = args(&[&server.ws_url(), "-c", "2", "--rate", "1/s", "-d", "3s"]);
        if keepalive {
            line.extend(args(&["--keepalive", "200ms", "--keepalive-message", "ka"]));
        }
        line
    };
    let (output, report) = load_report(line(true)).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 0, "{report}");
    assert!(count(&report, "messages", "keepalives") >= 4, "{report}");
    // Held open to the end of -d after their last ping, as a soak's connections are.
    assert!(number(&report, &["elapsed_s"]) >= 3.0, "{report}");
    assert_eq!(count(&report, "messages", "errors"), 0, "{report}");
    assert_eq!(count(&report, "messages", "corrupted"), 0, "{report}");

    let (output, report) = load_report(line(false)).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 2, "{report}");
    assert_eq!(count(&report, "messages", "keepalives"), 0);
}

/// A reconnect refused with 401 stops that connection: counted by cause, dropped with
/// the close that caused it, and the run's exit follows load's rules (a connection
/// opened, so no exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reconnect_stops_the_connection() {
    let (url, _seen) = support::spawn_going_away_server(
        vec![Handshake::Accept, Handshake::Refuse(401)],
        Duration::from_millis(500),
    )
    .await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "1",
        "--rate",
        "10/s",
        "-d",
        "2s",
        "--timeout",
        "200ms",
        "--reconnect",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        report["connections"]["reconnect_failures"]["401"].as_u64(),
        Some(1),
        "{report}"
    );
    assert_eq!(count(&report, "connections", "reconnects"), 0);
    assert_eq!(count(&report, "connections", "dropped"), 1);
    assert_eq!(
        report["connections"]["close_codes"]["1001"].as_u64(),
        Some(1)
    );
}

/// A server that stays down cannot hold the run past `-d` with the backoff: reconnecting
/// stops at the end of the run, and the connection is not counted as dropped (its time
/// disconnected is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_stops_at_the_end_of_the_run() {
    let (url, _seen) =
        support::spawn_going_away_server(vec![Handshake::Accept], Duration::from_millis(300)).await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "1",
        "--rate",
        "10/s",
        "-d",
        "2s",
        "--timeout",
        "200ms",
        "--reconnect",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(number(&report, &["elapsed_s"]) < 5.0, "{report}");
    assert!(
        number(&report, &["connections", "disconnected_s"]) >= 1.0,
        "{report}"
    );
    assert_eq!(count(&report, "connections", "reconnects"), 0);
    assert_eq!(count(&report, "connections", "dropped"), 0, "{report}");
}

/// The closed model keeps alive too: an echo that never comes leaves the connection
/// silent for `--timeout`, longer than the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_model_keeps_alive_while_an_echo_is_awaited() {
    let (url, _seen) =
        support::spawn_going_away_server(vec![Handshake::Accept], Duration::from_secs(30)).await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "1",
        "-d",
        "1s",
        "--timeout",
        "1s",
        "--keepalive",
        "100ms",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    // The going-away server never echoes: one ping, lost; keepalive pings meanwhile.
    assert!(count(&report, "messages", "keepalives") >= 5, "{report}");
}

/// `load` refuses `--on-connect` (a usage error naming the line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_connect_is_refused() {
    let output = load(args(&[
        "ws://127.0.0.1:9/dev",
        "--on-connect",
        "/send sub {}",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/send sub {}"), "{stderr}");
}

/// Two shards with `--reconnect`: `load merge` adds the reconnect counts, codes, lost
/// pings and histograms exactly; shard reports without the reconnect fields (as an older
/// wsprobe writes them) merge as reports with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_reports_merge_the_reconnects_exactly() {
    let server = limited_server(Duration::from_millis(700), Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    let mut paths = Vec::new();
    for index in 0..2 {
        let path = dir.path().join(format!("shard-{index}.json"));
        let output = load(args(&[
            &server.ws_url(),
            "-c",
            "4",
            "--rate",
            "100/s",
            "-d",
            "2s",
            "--reconnect",
            "--shard",
            &format!("{index}/2"),
            "--run-id",
            "soak",
            "--report-json",
            path.to_str().unwrap(),
        ]))
        .await;
        assert!(output.status.success(), "{}", describe(&output));
        let text = std::fs::read_to_string(&path).unwrap();
        reports.push(serde_json::from_str::<Value>(&text).unwrap());
        paths.push(path);
    }
    let merged_path = dir.path().join("merged.json");
    let merged = merge(&paths, &merged_path).await;
    let sum =
        |section: &str, key: &str| reports.iter().map(|r| count(r, section, key)).sum::<u64>();
    assert!(sum("connections", "reconnects") > 0);
    for (section, key) in [
        ("connections", "reconnects"),
        ("messages", "lost_to_reconnect"),
        ("messages", "sent"),
        ("reconnect_ms", "count"),
    ] {
        assert_eq!(
            count(&merged, section, key),
            sum(section, key),
            "{section}.{key}"
        );
    }
    let by_code: u64 = reports
        .iter()
        .map(|r| {
            r["connections"]["reconnects_by_code"]["1001"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        merged["connections"]["reconnects_by_code"]["1001"].as_u64(),
        Some(by_code)
    );
    let disconnected: f64 = reports
        .iter()
        .map(|r| number(r, &["connections", "disconnected_s"]))
        .sum();
    assert!((number(&merged, &["connections", "disconnected_s"]) - disconnected).abs() < 1e-6);
    assert!(merged["histograms"]["reconnect_us"].is_string());

    // Without the new fields (an older wsprobe's shards): merged as reports with none.
    for path in &paths {
        let mut report: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let connections = report["connections"].as_object_mut().unwrap();
        for key in [
            "reconnects",
            "reconnects_by_code",
            "reconnect_failures",
            "disconnected_s",
        ] {
            connections.remove(key);
        }
        let messages = report["messages"].as_object_mut().unwrap();
        for key in ["lost_to_reconnect", "keepalives", "keepalive_answers"] {
            messages.remove(key);
        }
        report.as_object_mut().unwrap().remove("reconnect_ms");
        report["histograms"]
            .as_object_mut()
            .unwrap()
            .remove("reconnect_us");
        report["settings"]
            .as_object_mut()
            .unwrap()
            .remove("reconnect");
        std::fs::write(path, report.to_string()).unwrap();
    }
    let merged = merge(&paths, &merged_path).await;
    assert_eq!(count(&merged, "connections", "reconnects"), 0);
    assert_eq!(count(&merged, "reconnect_ms", "count"), 0);
}
