//! Integration tests: `wsprobe load`, the real binary against the real `serve` on port 0
//! (in-process), or against small servers written here that misbehave on purpose.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wsprobe_core::secret::Secret;
use wsprobe_serve::{ServeConfig, ServeEvent};

use crate::support::{self, TIMEOUT};

#[path = "load_html.rs"]
mod html;
#[path = "load_local_address.rs"]
mod local_address;
#[path = "load_shard.rs"]
mod shard;
#[path = "load_soak.rs"]
mod soak;

/// Runs `wsprobe load ARGS…` (with `--no-progress`) off the async runtime, so in-process
/// servers keep serving, and returns its output.
async fn load(args: Vec<String>) -> Output {
    support::within(
        "wsprobe load",
        tokio::task::spawn_blocking(move || {
            assert_cmd::Command::cargo_bin("wsprobe")
                .expect("the wsprobe binary")
                .arg("load")
                .args(&args)
                .arg("--no-progress")
                .env_remove("WSPROBE_AUTH")
                .env_remove("WSPROBE_API_KEY")
                .timeout(TIMEOUT)
                .output()
                .expect("running wsprobe load")
        }),
    )
    .await
    .expect("the runner thread")
}

/// Runs `wsprobe load ARGS… --report-json FILE` and returns its output and the report,
/// checked by [`read_report`].
async fn load_report(mut args: Vec<String>) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    args.extend([
        "--report-json".to_owned(),
        json.to_str().unwrap().to_owned(),
    ]);
    let output = load(args).await;
    assert!(
        json.metadata().is_ok_and(|file| file.len() > 0),
        "no report was written: {}",
        describe(&output)
    );
    let report = read_report(&json);
    (output, report)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Reads the `--report-json` file and checks it has every documented field, typed.
fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON report was written");
    let report: Value = serde_json::from_str(&text).expect("the JSON report parses");
    assert_eq!(report["schema"], "wsprobe-load/1");
    for key in ["url", "model", "route", "echo"] {
        assert!(report[key].is_string(), "{key} in {report}");
    }
    for key in [
        "achieved_rate",
        "elapsed_s",
        "opening_s",
        "sending_s",
        "size",
    ] {
        assert!(report[key].is_number(), "{key} in {report}");
    }
    assert!(report["target_rate"].is_number() || report["target_rate"].is_null());
    assert!(report["interrupted"].is_boolean());
    for key in [
        "requested",
        "opened",
        "failed",
        "dropped",
        "stalled",
        "reconnects",
    ] {
        assert!(report["connections"][key].is_u64(), "connections.{key}");
    }
    assert!(report["connections"]["disconnected_s"].is_number());
    for key in [
        "failures",
        "close_codes",
        "reconnects_by_code",
        "reconnect_failures",
    ] {
        assert!(report["connections"][key].is_object(), "connections.{key}");
    }
    for key in [
        "sent",
        "echoed",
        "late",
        "lost",
        "not_sent",
        "in_flight",
        "duplicated",
        "corrupted",
        "error_frames",
        "errors",
        "lost_to_reconnect",
        "keepalives",
        "keepalive_answers",
    ] {
        assert!(report["messages"][key].is_u64(), "messages.{key}");
    }
    assert!(report["messages"]["error_kinds"].is_object());
    for histogram in ["round_trip_ms", "connect_ms", "reconnect_ms"] {
        let summary = &report[histogram];
        assert!(summary["count"].is_u64(), "{histogram}.count");
        for key in ["min", "mean", "p50", "p90", "p99", "p99.9", "max"] {
            let value = &summary[key];
            assert!(value.is_number() || value.is_null(), "{histogram}.{key}");
        }
    }
    assert!(report["thresholds"].is_array());
    report
}

fn count(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{section}.{key} in {report}"))
}

fn assert_clean(report: &Value, sent: u64) {
    assert_eq!(count(report, "messages", "sent"), sent, "{report}");
    assert_eq!(count(report, "messages", "echoed"), sent, "{report}");
    for key in [
        "late",
        "lost",
        "duplicated",
        "corrupted",
        "error_frames",
        "errors",
    ] {
        assert_eq!(count(report, "messages", key), 0, "{key} in {report}");
    }
    assert_eq!(report["round_trip_ms"]["count"], sent);
}

/// Waits until the server has seen `n` connections open.
async fn wait_connected(events: &mut tokio::sync::broadcast::Receiver<ServeEvent>, n: usize) {
    for _ in 0..n {
        support::wait_event(events, |event| {
            matches!(event, ServeEvent::Connected { .. }).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_run_with_a_count_echoes_every_ping() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "3",
        "-n",
        "60",
        "--size",
        "100",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["model"], "closed");
    assert_eq!(report["target_rate"], Value::Null);
    assert_eq!(count(&report, "connections", "opened"), 3);
    assert_eq!(report["connect_ms"]["count"], 3);
    assert_clean(&report, 60);
    let table = stdout(&output);
    assert!(table.contains("closed model"), "{table}");
    assert!(table.contains("60 sent, 60 echoed"), "{table}");
    // Every connection closed normally.
    for _ in 0..3 {
        let code = support::wait_event(&mut events, |event| match event {
            ServeEvent::Disconnected { code, .. } => Some(*code),
            _ => None,
        })
        .await;
        assert_eq!(code, 1000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_run_sends_on_the_timetable_and_counts_exactly() {
    let server = support::spawn_default_server().await;
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("rtt.hlog");
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "4",
        "--rate",
        "400/s",
        "-n",
        "100",
        "--echo",
        "body",
        "--hdr-log",
        hdr.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["model"], "open");
    assert_eq!(report["target_rate"], 400.0);
    assert_clean(&report, 100);
    // 100 pings at 400/s take a quarter of a second; the rate is measured over that.
    let rate = report["achieved_rate"].as_f64().unwrap();
    assert!(rate > 100.0 && rate <= 400.5, "{rate}");
    assert!(stdout(&output).contains("of 400.0/s target"));
    let log = std::fs::read_to_string(&hdr).unwrap();
    assert!(log.contains("\"StartTimestamp\""), "{log}");
    assert!(log.lines().any(|l| l.contains("HIST")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_api_key_is_counted_as_403_and_exits_3() {
    let config = ServeConfig {
        api_keys: vec![Secret::new("right-key")],
        ..ServeConfig::default()
    };
    let server = support::spawn_server(config).await;
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "3",
        "-n",
        "10",
        "--connect-rate",
        "1000/s",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "opened"), 0);
    assert_eq!(count(&report, "connections", "failed"), 3);
    assert_eq!(report["connections"]["failures"]["403"], 3, "{report}");
    assert_eq!(count(&report, "messages", "sent"), 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    assert!(stderr.contains("--api-key"), "the hint: {stderr}");
    assert!(
        !stderr.contains("right-key"),
        "no secret in the output: {stderr}"
    );

    // With the key, every connection opens.
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "3",
        "-n",
        "10",
        "--connect-rate",
        "1000/s",
        "--api-key",
        "right-key",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "opened"), 3);
    assert_clean(&report, 10);
    assert!(!stdout(&output).contains("right-key"));
    assert!(!report.to_string().contains("right-key"));
}

/// A token in the URL's query (a custom authorizer's) or its password is as secret as
/// `--auth`: neither the table nor the JSON report shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_the_url_are_redacted_in_the_report() {
    let server = support::spawn_default_server().await;
    let url = server.ws_url().replace("ws://", "ws://user:url-password@") + "?token=query-token";
    let (output, report) = load_report(args(&[&url, "-c", "1", "-n", "1"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for secret in ["url-password", "query-token"] {
        assert!(!stdout(&output).contains(secret), "{}", describe(&output));
        assert!(!report.to_string().contains(secret), "{report}");
    }
    assert!(
        report["url"].as_str().unwrap().contains("token="),
        "{report}"
    );
}

/// A server that echoes whole frames, except that, counting messages per connection
/// from 1: every 5th is dropped, every 7th is echoed twice, every 11th gets a gateway
/// error frame instead, and every 13th comes back with its last padding byte changed.
async fn spawn_misbehaving_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut n = 0;
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    n += 1;
                    let replies: Vec<String> = if n % 5 == 0 {
                        vec![]
                    } else if n % 7 == 0 {
                        vec![text.to_string(), text.to_string()]
                    } else if n % 11 == 0 {
                        vec![
                            r#"{"message": "Forbidden", "connectionId":"c=", "requestId":"r="}"#
                                .to_owned(),
                        ]
                    } else if n % 13 == 0 {
                        // `…PADDING"}`: change the byte before the closing quote.
                        let mut bytes = text.as_bytes().to_vec();
                        let at = bytes.len() - 3;
                        bytes[at] = if bytes[at] == b'#' { b'%' } else { b'#' };
                        vec![String::from_utf8(bytes).unwrap()]
                    } else {
                        vec![text.to_string()]
                    };
                    for reply in replies {
                        if ws.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_duplicated_corrupted_and_error_echoes_are_counted_exactly() {
    let url = spawn_misbehaving_server().await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "1",
        "--rate",
        "400/s",
        "-n",
        "40",
        "--echo",
        "full",
        "--timeout",
        "300ms",
        "--threshold",
        "errors==0",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let messages = &report["messages"];
    // Of 40: 8 dropped (5, 10, …, 40); 4 duplicated (7, 14, 21, 28; 35 was dropped);
    // 3 answered by an error frame (11, 22, 33); 3 damaged (13, 26, 39).
    assert_eq!(messages["sent"], 40, "{report}");
    assert_eq!(messages["echoed"], 26, "{report}");
    assert_eq!(messages["lost"], 8, "{report}");
    assert_eq!(messages["duplicated"], 4, "{report}");
    assert_eq!(messages["corrupted"], 3, "{report}");
    assert_eq!(messages["error_frames"], 3, "{report}");
    assert_eq!(messages["error_kinds"]["Forbidden"], 3, "{report}");
    assert_eq!(messages["late"], 0, "{report}");
    assert_eq!(messages["errors"], 8 + 4 + 3 + 3, "{report}");
    assert!(
        stdout(&output).contains("✗ errors 18 ≠ 0"),
        "{}",
        describe(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_that_hold_exit_0_and_breaches_are_listed_with_exit_1() {
    let server = support::spawn_default_server().await;
    let passing = load(args(&[
        &server.ws_url(),
        "-c",
        "2",
        "-n",
        "20",
        "--threshold",
        "p99<10s",
        "--threshold",
        "errors==0",
        "--threshold",
        "connect_errors==0",
    ]))
    .await;
    assert_eq!(passing.status.code(), Some(0), "{}", describe(&passing));
    let text = stdout(&passing);
    assert!(text.contains("✓ p99 "), "{text}");
    assert!(text.contains("✓ errors 0 = 0"), "{text}");

    let failing = load(args(&[
        &server.ws_url(),
        "-c",
        "2",
        "-n",
        "20",
        "--threshold",
        "p50<1us",
        "--threshold",
        "rate>=1000000/s",
        "--threshold",
        "errors<0.1%",
    ]))
    .await;
    assert_eq!(failing.status.code(), Some(1), "{}", describe(&failing));
    let text = stdout(&failing);
    assert!(text.contains("✗ p50 "), "{text}");
    assert!(text.contains("≥ 1us"), "{text}");
    assert!(text.contains("✗ rate "), "{text}");
    assert!(text.contains("✓ errors 0.000% < 0.1%"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_threshold_is_a_usage_error_before_anything_connects() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let output = load(args(&[
        &server.ws_url(),
        "-n",
        "5",
        "--threshold",
        "p99<fast",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`p99<fast` is not a threshold"), "{stderr}");
    assert!(stdout(&output).is_empty());
    assert!(
        events.try_recv().is_err(),
        "no connection reached the server"
    );

    let output = load(args(&[&server.ws_url(), "--echo", "off"])).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_mid_run_gives_a_report_with_dropped_connections() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let url = server.ws_url();
    let run = tokio::spawn(load_report(args(&[
        &url,
        "-c",
        "2",
        "--rate",
        "100/s",
        "-d",
        "5s",
        "--connect-rate",
        "1000/s",
    ])));
    wait_connected(&mut events, 2).await;
    // Both connections are open and pinging: the server shuts down (close 1001).
    server.shutdown().await;
    let (output, report) = support::within("the load run", run).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 2, "{report}");
    assert_eq!(report["connections"]["close_codes"]["1001"], 2, "{report}");
    assert!(count(&report, "messages", "errors") >= 2, "{report}");
    assert!(
        report["elapsed_s"].as_f64().unwrap() < 4.0,
        "the run ended with its connections: {report}"
    );
    // The rate is over the time actually spent sending, not the 5 s planned (the report
    // used to say "5.00s sending, 0.50s in all"), and the drop is said next to it.
    let sending = report["sending_s"].as_f64().unwrap();
    assert!(sending <= report["elapsed_s"].as_f64().unwrap(), "{report}");
    let rate = report["achieved_rate"].as_f64().unwrap();
    let sent = count(&report, "messages", "sent") as f64;
    assert!((rate - sent / sending).abs() < 1.0, "{report}");
    assert!(
        stdout(&output).contains("2 of 2 connections dropped during the run"),
        "{}",
        describe(&output)
    );
}

/// Starts `wsprobe load ARGS… --no-progress` as a child process, output piped.
fn start_load(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .arg("load")
        .args(args)
        .arg("--no-progress")
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running wsprobe load")
}

/// Sends `signal` (`INT`, `TERM`, `HUP`) to `child` with `kill`.
fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal}");
}

/// Waits (at most [`TIMEOUT`]) for `child` to exit, and returns its output.
async fn wait_output(child: std::process::Child, what: &str) -> Output {
    support::within(
        what,
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("waiting")),
    )
    .await
    .expect("the waiting thread")
}

/// Starts an open run of 30 s and waits until both its connections are open and pings
/// are reaching `server`.
async fn start_pinging(server: &wsprobe_serve::RunningServer, json: &Path) -> std::process::Child {
    let mut events = server.events();
    let child = start_load(&[
        &server.ws_url(),
        "-c",
        "2",
        "--rate",
        "200/s",
        "-d",
        "30s",
        "--report-json",
        json.to_str().unwrap(),
    ]);
    wait_connected(&mut events, 2).await;
    support::wait_event(&mut events, |event| {
        matches!(event, ServeEvent::Message { .. }).then_some(())
    })
    .await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_what_ran_and_exits_130() {
    let server = support::spawn_default_server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let child = start_pinging(&server, &json).await;
    send_signal(&child, "INT");
    let output = wait_output(child, "wsprobe load to stop after Ctrl-C").await;
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    assert!(
        stdout(&output).contains("interrupted by Ctrl-C"),
        "{}",
        describe(&output)
    );
    let report = read_report(&json);
    assert_eq!(report["interrupted"], true);
    let sent = count(&report, "messages", "sent");
    assert!(sent > 0, "{report}");
    assert_eq!(
        count(&report, "messages", "echoed"),
        sent,
        "in-flight echoes were awaited"
    );
    assert_eq!(count(&report, "messages", "lost"), 0, "{report}");
}

/// CI cancellation, `timeout(1)` and Kubernetes stop a run with SIGTERM, a closed terminal
/// with SIGHUP: both act as Ctrl-C. And the report file is replaced whole at the end:
/// while the run goes on, the previous report is still there, intact (it used to be
/// truncated at the start, and stayed empty when the run was killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_act_as_ctrl_c_and_the_report_is_replaced_whole() {
    let server = support::spawn_default_server().await;
    for signal in ["TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("load.json");
        std::fs::write(&json, "the previous report").unwrap();
        let child = start_pinging(&server, &json).await;
        assert_eq!(
            std::fs::read_to_string(&json).unwrap(),
            "the previous report",
            "during the run"
        );
        send_signal(&child, signal);
        let output = wait_output(child, "wsprobe load to stop after a signal").await;
        assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
        assert!(
            stdout(&output).contains(&format!("interrupted by SIG{signal}")),
            "{}",
            describe(&output)
        );
        let report = read_report(&json);
        assert_eq!(report["interrupted"], true, "{report}");
        assert_eq!(report["interrupted_by"], format!("SIG{signal}"), "{report}");
        assert!(count(&report, "messages", "sent") > 0, "{report}");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(files, ["load.json"], "no temporary file is left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_model_moves_on_after_a_timeout_and_counts_exactly() {
    let url = spawn_misbehaving_server().await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "1",
        "-n",
        "12",
        "--echo",
        "full",
        "--timeout",
        "200ms",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let messages = &report["messages"];
    // Of 12, one at a time: 5 and 10 dropped (each waited for 200 ms, then the next
    // ping went), 7 echoed twice, 11 answered by an error frame.
    assert_eq!(messages["sent"], 12, "{report}");
    assert_eq!(messages["echoed"], 9, "{report}");
    assert_eq!(messages["lost"], 2, "{report}");
    assert_eq!(messages["duplicated"], 1, "{report}");
    assert_eq!(messages["error_frames"], 1, "{report}");
    assert_eq!(messages["late"], 0, "{report}");
    assert_eq!(messages["corrupted"], 0, "{report}");
    let sending = report["sending_s"].as_f64().unwrap();
    assert!(sending >= 0.4, "two timeouts were waited for: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_counted_and_explained() {
    let server = support::spawn_default_server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    // `ulimit -n` in sh sets the soft and the hard limit: wsprobe cannot raise it.
    let script = format!(
        "ulimit -n 40 && exec \"$0\" load {} -c 60 -n 60 --connect-rate 2000/s --no-progress \
         --report-json {}",
        server.ws_url(),
        json.display()
    );
    let output = support::within(
        "wsprobe load with few file descriptors",
        tokio::task::spawn_blocking(move || {
            assert_cmd::Command::new("sh")
                .args(["-c", &script, env!("CARGO_BIN_EXE_wsprobe")])
                .timeout(TIMEOUT)
                .output()
                .expect("running sh")
        }),
    )
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: this process may open only 40 files"),
        "{}",
        describe(&output)
    );
    assert!(stderr.contains("ulimit -n"), "{stderr}");
    let report = read_report(&json);
    let opened = count(&report, "connections", "opened");
    let failed = count(&report, "connections", "failed");
    assert_eq!(opened + failed, 60, "{report}");
    assert!(opened > 0, "{report}");
    assert_eq!(
        report["connections"]["failures"]["too_many_open_files"], failed,
        "{report}"
    );
    assert!(failed > 0, "{report}");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// Waits (at most `bound`) for `child` to exit, and returns its output.
async fn wait_output_within(child: std::process::Child, bound: Duration, what: &str) -> Output {
    match tokio::time::timeout(
        bound,
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("waiting")),
    )
    .await
    {
        Ok(output) => output.expect("the waiting thread"),
        Err(_) => panic!("{what} did not end within {bound:?}"),
    }
}

/// The issue's case: a server that stops reading after the handshake used to hold `load`
/// for ever (the send had no limit and did not listen for the stop). Now a send that
/// cannot complete within `--timeout` gives its connection up as stalled, and the run
/// ends within `-d` + `--timeout` + 1 s (the bound here is generous).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_cannot_hold_the_run_past_its_end() {
    let (url, _first_messages) = support::spawn_deaf_server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let child = start_load(&[
        &url,
        "-c",
        "5",
        "--rate",
        "2000/s",
        "--size",
        "65536",
        "-d",
        "3s",
        "--timeout",
        "2s",
        "--report-json",
        json.to_str().unwrap(),
    ]);
    let output = wait_output_within(child, Duration::from_secs(20), "wsprobe load").await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_report(&json);
    assert_eq!(count(&report, "connections", "opened"), 5, "{report}");
    assert_eq!(count(&report, "connections", "stalled"), 5, "{report}");
    assert_eq!(count(&report, "connections", "dropped"), 5, "{report}");
    assert!(count(&report, "messages", "errors") >= 5, "{report}");
    assert!(
        stdout(&output).contains("5 stalled: the server is not reading"),
        "{}",
        describe(&output)
    );
}

/// A SIGTERM while sends are stuck on a server that stopped reading ends the run (it
/// used to wait for the stuck send for ever, or die without a report).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_run_whose_sends_are_stuck() {
    let (url, mut first_messages) = support::spawn_deaf_server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let child = start_load(&[
        &url,
        "-c",
        "2",
        "--rate",
        "2000/s",
        "--size",
        "1048576",
        "-d",
        "60s",
        "--timeout",
        "3s",
        "--report-json",
        json.to_str().unwrap(),
    ]);
    for _ in 0..2 {
        support::within("a first message", first_messages.recv())
            .await
            .expect("the server runs");
    }
    send_signal(&child, "TERM");
    let output = wait_output_within(child, Duration::from_secs(20), "wsprobe load").await;
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let report = read_report(&json);
    assert_eq!(report["interrupted"], true, "{report}");
    assert!(count(&report, "messages", "sent") >= 2, "{report}");
}

/// A message far larger than any echo of the pings is refused (tungstenite would take up
/// to 64 MiB per connection): the connection is closed with 1009 and counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_with_close_1009() {
    let (url, mut closes) = support::spawn_oversized_server(4 << 20).await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "2",
        "-n",
        "4",
        "--size",
        "100",
        "--timeout",
        "2s",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for _ in 0..2 {
        let code = support::within("the client's close", closes.recv()).await;
        assert_eq!(code, Some(Some(1009)), "{}", describe(&output));
    }
    assert_eq!(count(&report, "connections", "dropped"), 2, "{report}");
    assert_eq!(report["connections"]["close_codes"]["1009"], 2, "{report}");
    assert_eq!(count(&report, "messages", "corrupted"), 0, "{report}");

    // The limit is near what the pings need: 64 KiB plus the ping (here 100 bytes) is
    // still read (and counted as corrupted, being no echo).
    let (url, mut closes) = support::spawn_oversized_server(64 << 10).await;
    let (output, report) = load_report(args(&[
        &url,
        "-c",
        "1",
        "-n",
        "1",
        "--size",
        "100",
        "--timeout",
        "1s",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let code = support::within("the client's close", closes.recv()).await;
    assert_eq!(code, Some(Some(1000)), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 0, "{report}");
    assert_eq!(count(&report, "messages", "corrupted"), 1, "{report}");
}

/// The open model honours `-d` above capacity: sending stops at the end of the duration
/// (it used to send every slot of the timetable however late: 1,000,000 pings for
/// `--rate 1000000/s -d 1s`), the slots left are reported as not sent, with a hint, and
/// the rate is measured over the time spent sending. An absurd rate is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_stops_at_the_end_of_the_duration_above_capacity() {
    let server = support::spawn_default_server().await;
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "2",
        "--rate",
        "1000000/s",
        "-d",
        "1s",
        "--timeout",
        "2s",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 0, "{report}");
    let sent = count(&report, "messages", "sent");
    let not_sent = count(&report, "messages", "not_sent");
    assert!(not_sent > 0, "{report}");
    assert_eq!(sent + not_sent, 1_000_000, "every slot of 1 s: {report}");
    let sending = report["sending_s"].as_f64().unwrap();
    assert!(sending <= report["elapsed_s"].as_f64().unwrap(), "{report}");
    let rate = report["achieved_rate"].as_f64().unwrap();
    assert!(
        (rate - sent as f64 / sending).abs() < 1.0,
        "the rate is over the time spent sending: {report}"
    );
    assert!(report["client_lag"]["lagged"].is_u64(), "{report}");
    assert!(
        stdout(&output).contains("the target rate is above what the client or the server sustains"),
        "{}",
        describe(&output)
    );

    let absurd = load(args(&[
        &server.ws_url(),
        "--rate",
        "1e308/s",
        "-d",
        "200ms",
    ]))
    .await;
    assert_eq!(absurd.status.code(), Some(2), "{}", describe(&absurd));
    let stderr = String::from_utf8_lossy(&absurd.stderr);
    assert!(stderr.contains("--rate must be at most"), "{stderr}");
}

/// A damaged echo answers its ping: a body echo under `--echo full` is corrupted, not
/// also lost (2 pings used to make 4 errors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_echo_is_not_also_lost() {
    let server = support::spawn_default_server().await;
    let (output, report) = load_report(args(&[
        &server.ws_url(),
        "-c",
        "1",
        "-n",
        "2",
        "--echo",
        "full",
        "--timeout",
        "2s",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "messages", "sent"), 2, "{report}");
    assert_eq!(count(&report, "messages", "corrupted"), 2, "{report}");
    assert_eq!(count(&report, "messages", "lost"), 0, "{report}");
    assert_eq!(count(&report, "messages", "errors"), 2, "{report}");
}

/// A second Ctrl-C stops the wait for echoes at once; the pings then in flight are
/// reported as "in flight, not counted" (neither echoed nor lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_reports_the_pings_in_flight_as_not_counted() {
    let (url, mut first_messages) = support::spawn_deaf_server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let mut child = start_load(&[
        &url,
        "-c",
        "2",
        "--rate",
        "200/s",
        "-d",
        "60s",
        "--timeout",
        "60s",
        "--report-json",
        json.to_str().unwrap(),
    ]);
    for _ in 0..2 {
        support::within("a first message", first_messages.recv())
            .await
            .expect("the server runs");
    }
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, mut stderr_lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    send_signal(&child, "INT");
    // The first Ctrl-C is being handled: now waiting for the echoes in flight.
    support::within("the note of the first Ctrl-C", async {
        while let Some(line) = stderr_lines.recv().await {
            if line.contains("Ctrl-C again to stop at once") {
                return;
            }
        }
        panic!("stderr ended without the note");
    })
    .await;
    send_signal(&child, "INT");
    let output = wait_output_within(child, Duration::from_secs(20), "wsprobe load").await;
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let report = read_report(&json);
    let in_flight = count(&report, "messages", "in_flight");
    assert!(in_flight > 0, "{report}");
    assert_eq!(count(&report, "messages", "lost"), 0, "{report}");
    assert!(
        stdout(&output).contains(&format!("{in_flight} in flight (not counted)")),
        "{}",
        describe(&output)
    );
}

/// A server that floods the connections with messages cannot keep the run from seeing
/// its timers: both models still send, and end within `-d` + `--timeout` + 1 s (the
/// bound here is generous).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_server_cannot_hold_the_run_past_its_end() {
    let url = support::spawn_flood_server().await;
    for model in [&["--rate", "100/s"][..], &[]] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("load.json");
        let mut line = vec![
            url.as_str(),
            "-c",
            "2",
            "-d",
            "1s",
            "--timeout",
            "500ms",
            "--report-json",
            json.to_str().unwrap(),
        ];
        line.extend_from_slice(model);
        let child = start_load(&line);
        let output = wait_output_within(child, Duration::from_secs(20), "wsprobe load").await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let report = read_report(&json);
        assert!(count(&report, "messages", "corrupted") > 0, "{report}");
        assert!(
            count(&report, "messages", "sent") > 0,
            "{model:?}: {report}"
        );
    }
}

/// A server that dies mid-run (no close frame) ends the run early: the connections are
/// dropped with 1006, and the sending time and the rate are what actually ran, not the
/// 6 s planned (the report used to say "6.00s sending, 0.30s in all").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_run_gives_the_time_actually_spent_sending() {
    let url = support::spawn_dying_server(20).await;
    let (output, report) = load_report(args(&[
        &url, "-c", "2", "--rate", "100/s", "-d", "6s", "--echo", "full",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(count(&report, "connections", "dropped"), 2, "{report}");
    assert_eq!(report["connections"]["close_codes"]["1006"], 2, "{report}");
    assert_eq!(count(&report, "messages", "echoed"), 40, "{report}");
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    let sending = report["sending_s"].as_f64().unwrap();
    assert!(
        elapsed < 6.0,
        "the run ended with its connections: {report}"
    );
    assert!(sending <= elapsed, "{report}");
    let rate = report["achieved_rate"].as_f64().unwrap();
    let sent = count(&report, "messages", "sent") as f64;
    assert!((rate - sent / sending).abs() < 1.0, "{report}");
    let table = stdout(&output);
    assert!(
        table.contains("2 of 2 connections dropped during the run"),
        "{table}"
    );
}

/// Under `nohup` (here `trap '' HUP`, which `exec` keeps), a hangup does not stop the run:
/// an ignored SIGHUP stays ignored. A Ctrl-C still does.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_sighup_stays_ignored() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let script = format!(
        "trap '' HUP && exec \"$0\" load {} -c 1 --rate 100/s -d 30s --no-progress \
         --report-json {}",
        server.ws_url(),
        json.display()
    );
    let child = std::process::Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_wsprobe")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running sh");
    wait_connected(&mut events, 1).await;
    send_signal(&child, "HUP");
    // Pings still arrive after the hangup (wsprobe is the process: `exec`).
    for _ in 0..3 {
        support::wait_event(&mut events, |event| {
            matches!(event, ServeEvent::Message { .. }).then_some(())
        })
        .await;
    }
    send_signal(&child, "INT");
    let output = wait_output(child, "wsprobe load to stop after Ctrl-C").await;
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let report = read_report(&json);
    assert_eq!(report["interrupted_by"], "SIGINT", "{report}");
}
