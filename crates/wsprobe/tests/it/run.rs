//! Integration tests: `wsprobe run`, the real binary against `serve` in-process on port 0.
//!
//! Snapshot cases live in `tests/cases/<name>/`: `script.wsp`, and the expected `stdout`,
//! `stderr` and `exit` code of `wsprobe run script.wsp --url URL …` run in that directory.
//! An `args` file (one argument a line; `{url}` is replaced by the server's URL) replaces
//! the arguments after `script.wsp` (by default `--url URL` and [`DEFAULT_ARGS`]). Durations, ports and connection ids are
//! redacted before comparing. `UPDATE_SNAPSHOTS=1 cargo test --test it run::` rewrites the
//! expected files from what the binary printed (review the diff!).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use regex::Regex;
use tokio::sync::broadcast::error::TryRecvError;
use wsprobe_core::secret::Secret;
use wsprobe_serve::{RunningServer, ServeConfig};

use crate::support::spawn_server;

/// The token and API key the shared server requires.
const TOKEN: &str = "tok-5ecret-123";
const API_KEY: &str = "key-5ecret-456";

/// Extra arguments of a case without an `args` file: credentials as the defaults of every
/// `connect`, and as variables for scripts that set them per connection.
pub(crate) const DEFAULT_ARGS: &[&str] = &[
    "--auth",
    "Bearer tok-5ecret-123",
    "--api-key",
    "key-5ecret-456",
    "--var",
    "TOKEN=tok-5ecret-123",
    "--var",
    "API_KEY=key-5ecret-456",
];

/// The server every case runs against: a token and an API key required, a broadcast
/// route, and serve's `whoami` route for learning a connection id.
pub(crate) async fn case_server() -> RunningServer {
    let mut config = ServeConfig {
        tokens: vec![Secret::new(TOKEN)],
        api_keys: vec![Secret::new(API_KEY)],
        ..ServeConfig::default()
    };
    config.routes.insert(
        "sendmessage",
        wsprobe_serve::RouteBehaviour::parse("broadcast").expect("a behaviour"),
    );
    config.routes.insert(
        "whoami",
        wsprobe_serve::RouteBehaviour::parse("whoami").expect("a behaviour"),
    );
    spawn_server(config).await
}

pub(crate) fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

/// Runs the real binary with `args` in `dir`, off the runtime's worker threads, with a
/// deadline so a hanging run fails the test.
async fn wsprobe<S: AsRef<str>>(dir: &Path, args: &[S]) -> Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|arg| arg.as_ref().to_owned()).collect();
    let run = tokio::task::spawn_blocking(move || {
        let child = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
            .args(&args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env_remove("WSPROBE_AUTH")
            .env_remove("WSPROBE_API_KEY")
            .env_remove("WS_URL")
            .env_remove("TOKEN")
            .env_remove("API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running wsprobe");
        child.wait_with_output().expect("waiting for wsprobe")
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("wsprobe run finished within a minute")
        .expect("the blocking task ran")
}

/// Replaces what changes from run to run: durations, ports, connection ids.
fn redact(text: &str, url: &str) -> String {
    let text = text.replace(url, "<url>");
    let port = Regex::new(r"127\.0\.0\.1:\d+").expect("regex");
    let duration = Regex::new(r"\b\d+(\.\d+)? ?(ms|s)\b").expect("regex");
    let id = Regex::new(r"[A-Za-z0-9+/_-]{15}=").expect("regex");
    let text = port.replace_all(&text, "127.0.0.1:<port>");
    let text = duration.replace_all(&text, "<dur>");
    id.replace_all(&text, "<id>").into_owned()
}

fn case_args(dir: &Path, url: &str) -> Vec<String> {
    let mut args = vec!["run".to_owned(), "script.wsp".to_owned()];
    match std::fs::read_to_string(dir.join("args")) {
        Ok(text) => args.extend(
            text.lines()
                .filter(|line| !line.is_empty())
                .map(|line| line.replace("{url}", url)),
        ),
        Err(_) => {
            args.extend(["--url".to_owned(), url.to_owned()]);
            args.extend(DEFAULT_ARGS.iter().map(|arg| (*arg).to_owned()));
        }
    }
    args
}

/// Every case of tests/cases against one server; all mismatches are reported together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_cases() {
    let server = case_server().await;
    let url = server.ws_url();
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.join("script.wsp").exists())
        .collect();
    names.sort();
    assert!(names.len() >= 20, "only {} cases found", names.len());
    let mut mismatches = Vec::new();
    for dir in names {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut events = server.events();
        let output = wsprobe(&dir, &case_args(&dir, &url)).await;
        let stdout = redact(&String::from_utf8_lossy(&output.stdout), &url);
        let stderr = redact(&String::from_utf8_lossy(&output.stderr), &url);
        let code = output.status.code().expect("an exit code").to_string();
        if update {
            std::fs::write(dir.join("stdout"), &stdout).unwrap();
            std::fs::write(dir.join("stderr"), &stderr).unwrap();
            std::fs::write(dir.join("exit"), format!("{code}\n")).unwrap();
            continue;
        }
        let expected = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        for (what, actual, wanted) in [
            ("stdout", stdout.as_str(), expected("stdout")),
            ("stderr", stderr.as_str(), expected("stderr")),
            ("exit", code.as_str(), expected("exit").trim().to_owned()),
        ] {
            if actual != wanted {
                mismatches.push(format!(
                    "case {name}: {what} differs\n--- expected\n{wanted}\n--- actual\n{actual}"
                ));
            }
        }
        // A script that does not parse must not reach the network at all.
        if code == "2" {
            match events.try_recv() {
                Err(TryRecvError::Empty) => {}
                other => mismatches.push(format!(
                    "case {name}: exit 2, but the server saw something: {other:?}"
                )),
            }
        }
    }
    server.shutdown().await;
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

/// A script that fails once and passes twice, with secrets in what it receives.
const REPORTED_SCRIPT: &str = r#"connect ${WS_URL}
  auth Bearer ${TOKEN}
send send "ok"
expect echo

test "leaks the token in a message"
  send send "the token is tok-5ecret-123"
  expect text "something else" within 200ms

test "passes"
  send send 1
  expect json 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_count_tests_and_redact_secrets() {
    let server = case_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("reported.wsp"), REPORTED_SCRIPT).unwrap();
    std::fs::write(
        dir.path().join("second.wsp"),
        "connect\n  auth Bearer ${TOKEN}\nsend send 2\nexpect echo\n",
    )
    .unwrap();
    let args = [
        "run",
        "reported.wsp",
        "second.wsp",
        "--url",
        &url,
        "--var",
        &format!("TOKEN={TOKEN}"),
        "--api-key",
        API_KEY,
        "--report",
        "junit=junit.xml",
        "--report",
        "json=report.json",
    ];
    let output = wsprobe(dir.path(), &args).await;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(TOKEN), "{stdout}");
    assert!(stdout.contains("the token is <redacted>"), "{stdout}");

    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit.xml");
    assert!(
        !junit.contains(TOKEN) && !junit.contains(API_KEY),
        "{junit}"
    );
    let (suites, cases, failures) = junit_counts(&junit);
    assert_eq!(
        suites,
        vec![
            ("reported.wsp".to_owned(), 3, 1),
            ("second.wsp".to_owned(), 1, 0)
        ]
    );
    assert_eq!(cases, 4);
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].contains(" --> reported.wsp:8:3"),
        "{}",
        failures[0]
    );
    assert!(
        failures[0].contains("the token is <redacted>"),
        "{}",
        failures[0]
    );
    assert!(!failures[0].contains('\u{1b}'), "colour codes in JUnit");

    let json = std::fs::read_to_string(dir.path().join("report.json")).expect("report.json");
    assert!(!json.contains(TOKEN) && !json.contains(API_KEY), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("the JSON report parses");
    assert_eq!(report["version"], 1);
    assert_eq!(report["success"], false);
    assert_eq!(report["passed"], 3);
    assert_eq!(report["failed"], 1);
    let tests = &report["files"][0]["tests"];
    assert_eq!(tests[0]["name"], "reported");
    assert_eq!(tests[1]["name"], "leaks the token in a message");
    assert_eq!(tests[1]["status"], "failed");
    let failure = &tests[1]["failure"];
    assert_eq!(failure["kind"], "expectation");
    assert_eq!(failure["line"], 8);
    assert_eq!(failure["column"], 3);
    assert_eq!(failure["received"][0], "text \"the token is <redacted>\"");
    assert!(tests[1]["duration_ms"].as_f64().unwrap() >= 200.0);
    assert_eq!(report["files"][1]["tests"][0]["status"], "passed");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_secrets_shows_them() {
    let server = case_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("reported.wsp"), REPORTED_SCRIPT).unwrap();
    let args = [
        "--show-secrets",
        "run",
        "reported.wsp",
        "--url",
        &url,
        "--var",
        &format!("TOKEN={TOKEN}"),
        "--api-key",
        API_KEY,
    ];
    let output = wsprobe(dir.path(), &args).await;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("the token is tok-5ecret-123"), "{stdout}");
    server.shutdown().await;
}

/// Syntax errors of every file are reported together, and nothing connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_is_checked_before_anything_connects() {
    let server = case_server().await;
    let url = server.ws_url();
    let mut events = server.events();
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        dir.path().join("good.wsp"),
        "connect\nsend send 1\nexpect echo\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad1.wsp"), "connect\nsned x\n").unwrap();
    std::fs::write(
        dir.path().join("bad2.wsp"),
        "connect\nexpect json $.a == b\n",
    )
    .unwrap();
    let args = ["run", "good.wsp", "bad1.wsp", "bad2.wsp", "--url", &url];
    let output = wsprobe(dir.path(), &args).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(" --> bad1.wsp:2:1"), "{stderr}");
    assert!(stderr.contains(" --> bad2.wsp:2:20"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran");
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
    server.shutdown().await;
}

/// The `(testsuite name, tests, failures)` of each suite, the number of testcases, and the
/// text of each `<failure>`, read with a real XML parser (which also checks it is
/// well-formed).
fn junit_counts(xml: &str) -> (Vec<(String, usize, usize)>, usize, Vec<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suites = Vec::new();
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut in_failure = false;
    let attribute = |element: &quick_xml::events::BytesStart, name: &[u8]| -> String {
        element
            .attributes()
            .map(|a| a.expect("a well-formed attribute"))
            .find(|a| a.key.as_ref() == name)
            .map(|a| a.unescape_value().expect("an attribute value").into_owned())
            .unwrap_or_default()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(element) | Event::Empty(element)
                if element.name().as_ref() == b"testsuite" =>
            {
                suites.push((
                    attribute(&element, b"name"),
                    attribute(&element, b"tests").parse().expect("a count"),
                    attribute(&element, b"failures").parse().expect("a count"),
                ));
            }
            Event::Start(element) | Event::Empty(element)
                if element.name().as_ref() == b"testcase" =>
            {
                cases += 1;
            }
            Event::Start(element) if element.name().as_ref() == b"failure" => {
                in_failure = true;
                failures.push(String::new());
            }
            Event::Text(text) if in_failure => {
                let decoded = text.decode().expect("text").into_owned();
                let unescaped = quick_xml::escape::unescape(&decoded)
                    .expect("escaped text")
                    .into_owned();
                failures
                    .last_mut()
                    .expect("inside a failure")
                    .push_str(&unescaped);
            }
            Event::GeneralRef(reference) if in_failure => {
                let name = reference.decode().expect("a reference").into_owned();
                let text = quick_xml::escape::unescape(&format!("&{name};"))
                    .expect("a known entity")
                    .into_owned();
                failures
                    .last_mut()
                    .expect("inside a failure")
                    .push_str(&text);
            }
            Event::End(element) if element.name().as_ref() == b"failure" => in_failure = false,
            Event::Eof => break,
            _ => {}
        }
    }
    (suites, cases, failures)
}

#[test]
fn redaction_keeps_the_shape() {
    assert_eq!(
        redact(
            "✓ echo (1.2 ms) within 300ms to ws://127.0.0.1:4000/dev id Ab3dEfGh1jKlMn0=",
            "ws://127.0.0.1:4000/dev"
        ),
        "✓ echo (<dur>) within <dur> to <url> id <id>"
    );
}

/// Ctrl-C: the tests that finished are summarised and reported, and the exit code is 130.
#[tokio::test]
async fn ctrl_c_reports_the_finished_tests() {
    interrupted_run_reports_the_finished_tests("INT", "SIGINT").await;
}

/// SIGTERM (CI cancellation, `timeout(1)`, Kubernetes) and SIGHUP act as Ctrl-C: before,
/// they killed the run with no summary and report files left empty.
#[tokio::test]
async fn sigterm_and_sighup_act_as_ctrl_c() {
    interrupted_run_reports_the_finished_tests("TERM", "SIGTERM").await;
    // Under `nohup` the child inherits an ignored SIGHUP, which wsprobe rightly keeps.
    if !hangup_ignored() {
        interrupted_run_reports_the_finished_tests("HUP", "SIGHUP").await;
    }
}

/// Whether this test process ignores SIGHUP (bit 1 of `SigIgn` in `/proc/self/status`).
fn hangup_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & 1 != 0)
}

/// Sends `signal` while the second test sleeps: the first is reported, the summary and
/// both report files say the run was interrupted, and the exit code is 130.
async fn interrupted_run_reports_the_finished_tests(signal: &str, name: &str) {
    use std::io::BufRead;

    let server = case_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = "connect\nsend send 1\nexpect echo\n\ntest \"sleeps a minute\"\n  sleep 1m\n";
    std::fs::write(dir.path().join("slow.wsp"), script).unwrap();
    let path = dir.path().to_owned();
    let signal = signal.to_owned();
    let run = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
            .args([
                "run",
                "slow.wsp",
                "--url",
                &url,
                "--report",
                "json=report.json",
                "--report",
                "junit=junit.xml",
            ])
            .args(DEFAULT_ARGS)
            .current_dir(&path)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running wsprobe");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        // Wait for the implicit test's line (named after the file): the run is then
        // inside "sleeps a minute".
        let mut seen = String::new();
        while !seen.contains("✓ slow") {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).expect("reading stdout");
            assert!(read > 0, "wsprobe ended early: {seen}");
            seen.push_str(&line);
        }
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).expect("reading stdout");
        (child.wait().expect("waiting for wsprobe"), seen + &rest)
    });
    let (status, stdout) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("wsprobe stopped within 30s of the signal")
        .expect("the blocking task ran");
    assert_eq!(status.code(), Some(130), "{name}: {stdout}");
    assert!(
        stdout.contains("1 passed, 0 failed (1 test in 1 file"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("interrupted by {name})")),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report.json")).expect("report.json"),
    )
    .expect("the JSON report parses");
    assert_eq!(report["passed"], 1);
    assert_eq!(report["files"][0]["tests"][0]["name"], "slow");
    assert_eq!(report["interrupted"], true, "{name}");
    assert_eq!(report["interrupted_by"], name);
    assert_eq!(report["success"], false);
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains(&format!(
            r#"<property name="wsprobe.interrupted" value="{name}"/>"#
        )),
        "{junit}"
    );
    assert!(junit.trim_end().ends_with("</testsuites>"), "{junit}");
    server.shutdown().await;
}

/// A server that completes the handshake and then never reads: sends pile up in the
/// socket buffers until a write blocks. The run must give up after `--timeout`, not hang.
#[tokio::test]
async fn a_send_to_a_server_that_stopped_reading_gives_up_after_the_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    // A small receive buffer makes the client's writes block sooner.
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = socket.listen(8).expect("listen");
    let url = format!("ws://{}/dev", listener.local_addr().unwrap());
    let (holder, mut release) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("a client");
        let ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("a handshake");
        // Hold the connection open, unread, until the test ends.
        let _ = (&mut release).await;
        drop(ws);
    });

    let dir = tempfile::tempdir().expect("a temporary directory");
    let line = format!("text {}\n", "x".repeat(60_000));
    let script = format!("connect {url}\n{}", line.repeat(400));
    std::fs::write(dir.path().join("flood.wsp"), script).expect("writing the script");
    let started = std::time::Instant::now();
    let output = wsprobe(dir.path(), &["run", "flood.wsp", "--timeout", "500ms"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("could not text within 500ms: the server is not reading"),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it gave up in time"
    );
    drop(holder);
    let _ = server.await;
}

/// A script that does not read while the server floods keeps only the newest frames, and
/// a failure then says how many were dropped. Before, every frame was kept (a 4 s flood of
/// 1 KB messages peaked near 1 GB) and nothing said so.
#[tokio::test]
async fn a_flood_while_the_script_sleeps_is_bounded_and_the_failure_counts_drops() {
    let url = crate::support::spawn_flood_server().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = format!("connect {url}\nsleep 300ms\nexpect text \"never\" within 100ms\n");
    std::fs::write(dir.path().join("flood.wsp"), script).expect("writing the script");
    let output = wsprobe(dir.path(), &["run", "flood.wsp", "--inbox-frames", "100"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        Regex::new(r"nothing matched within 100ms; \d+ older unconsumed frames dropped")
            .unwrap()
            .is_match(&stdout),
        "{stdout}"
    );
    assert!(stdout.contains("received: 100 messages"), "{stdout}");
    assert!(stdout.contains("--inbox-frames"), "{stdout}");
}

/// Peak memory of `run` while 200 MB of 1 KB messages arrive unread: bounded by the inbox
/// defaults (10,000 frames, 16 MiB), far below what was sent. A guarantee, not a
/// benchmark: the bound is generous.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn peak_memory_of_run_under_a_flood_is_bounded() {
    let (url, mut written, release) = crate::support::spawn_burst_server(200_000, 1024).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = format!("connect {url}\nexpect text \"done\" within 2m\n");
    std::fs::write(dir.path().join("burst.wsp"), script).expect("writing the script");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(["run", "burst.wsp"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running wsprobe");
    tokio::time::timeout(Duration::from_secs(120), written.recv())
        .await
        .expect("the burst was written within two minutes")
        .expect("the server wrote the burst");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .expect("the child's status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in kB");
    release.send(()).expect("the server waits for the release");
    let output = tokio::task::spawn_blocking(move || {
        let _ = child.stdin.take();
        child.wait_with_output().expect("waiting for wsprobe")
    });
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("wsprobe ended")
        .expect("the blocking task ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        peak_kib < 100 * 1024,
        "peak RSS {peak_kib} KiB while 200 MB arrived unread"
    );
}

/// A message larger than the inbox is refused: the server gets a close frame with 1009
/// (before, the limit was tungstenite's 64 MiB and the connection was dropped silently).
#[tokio::test]
async fn an_oversized_message_is_answered_with_close_1009() {
    let (url, mut closes) = crate::support::spawn_oversized_server(100_000).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = format!("connect {url}\ntext hi\nexpect text \"x\" within 5s\n");
    std::fs::write(dir.path().join("big.wsp"), script).expect("writing the script");
    let output = wsprobe(dir.path(), &["run", "big.wsp", "--inbox-bytes", "64KiB"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("too large"), "{stdout}");
    assert!(
        stdout.contains("closed the connection with 1009"),
        "{stdout}"
    );
    let code = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .expect("the server saw the connection end");
    assert_eq!(code, Some(Some(1009)));
}

/// A protocol violation from the server is answered with close 1002 before the
/// connection is dropped (before, it was dropped without a close frame).
#[tokio::test]
async fn a_protocol_violation_is_answered_with_close_1002() {
    let (url, mut closes) = crate::support::spawn_protocol_violating_server().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = format!("connect {url}\ntext hi\nexpect text \"x\" within 5s\n");
    std::fs::write(dir.path().join("bad.wsp"), script).expect("writing the script");
    let output = wsprobe(dir.path(), &["run", "bad.wsp"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("protocol error"), "{stdout}");
    let code = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .expect("the server saw the connection end");
    assert_eq!(code, Some(Some(1002)));
}

/// A close reason and messages with escape sequences are shown escaped in a failure:
/// before, the close reason went to the terminal raw.
#[tokio::test]
async fn escape_sequences_in_failures_are_shown_escaped() {
    let url = crate::support::spawn_hostile_server().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = format!("connect {url}\ntext hi\nexpect text \"never\" within 5s\n");
    std::fs::write(dir.path().join("hostile.wsp"), script).expect("writing the script");
    let output = wsprobe(dir.path(), &["run", "hostile.wsp"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r"closed with code 4000 (bye\x1b[6n)"),
        "{stdout}"
    );
    assert!(stdout.contains(r"text \x1b]0;pwned\x07\x1b[2J"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert!(!stdout.contains('\u{202e}'), "{stdout}");
}

/// A value captured under a secret-looking name is redacted in the run's output and
/// reports, as it is at the prompt (before, `run` printed it in clear).
#[tokio::test]
async fn secret_looking_captures_are_redacted_in_output_and_reports() {
    let server = case_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = "connect\nsend send \"s3cr3t-captured-99\"\ncapture session_token = json $\n\
                  send send \"${session_token}\"\nexpect json $.nope exists within 300ms\n";
    std::fs::write(dir.path().join("capture.wsp"), script).expect("writing the script");
    let mut args = vec![
        "run",
        "capture.wsp",
        "--url",
        &url,
        "--report",
        "json=report.json",
        "--report",
        "junit=junit.xml",
    ];
    args.extend_from_slice(DEFAULT_ARGS);
    let output = wsprobe(dir.path(), &args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    for file in ["report.json", "junit.xml"] {
        let text = std::fs::read_to_string(dir.path().join(file)).expect("a report");
        assert!(!text.contains("s3cr3t-captured-99"), "{file}: {text}");
    }
    assert!(!stdout.contains("s3cr3t-captured-99"), "{stdout}");
    server.shutdown().await;
}

/// An HTTP server on port 0 that answers every request `200 OK` and sends its request head
/// (the request line, then the headers) down the channel.
async fn recording_http_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let addr = listener.local_addr().expect("an address");
    let (record, lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let _ = record.send(head.trim_end().to_owned());
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (format!("http://{addr}/dev"), lines)
}

/// The same connection id reaches the wire the same way from a script and from `wsprobe
/// manage`: percent-encoded fully, as the AWS SDKs send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_ids_reach_the_wire_percent_encoded() {
    let (stage, mut lines) = recording_http_server().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        dir.path().join("post.wsp"),
        "post R0oX/Adf= hello\nexpect status 200\n",
    )
    .unwrap();
    let management = format!("{stage}/@connections");
    let ran = wsprobe(
        dir.path(),
        &["run", "post.wsp", "--management-url", &management],
    )
    .await;
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stdout)
    );
    let wanted = "POST /dev/@connections/R0oX%2FAdf%3D HTTP/1.1";
    let head = tokio::time::timeout(crate::support::TIMEOUT, lines.recv()).await;
    let head = head.ok().flatten().unwrap_or_default();
    assert_eq!(head.lines().next(), Some(wanted), "{head}");

    let managed = wsprobe(
        dir.path(),
        &["manage", "post", "R0oX/Adf=", "hello", "--url", &stage],
    )
    .await;
    assert_eq!(
        managed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&managed.stderr)
    );
    let head = tokio::time::timeout(crate::support::TIMEOUT, lines.recv()).await;
    let head = head.ok().flatten().unwrap_or_default();
    assert_eq!(head.lines().next(), Some(wanted), "{head}");
}

/// With `--sigv4`, a script's `@connections` call is signed, as `wsprobe manage`'s is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_calls_of_a_script_are_signed_with_sigv4() {
    let (stage, mut heads) = recording_http_server().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("get.wsp"), "get abc=\nexpect status 200\n").unwrap();
    let management = format!("{stage}/@connections");
    let args: Vec<String> = [
        "run",
        "get.wsp",
        "--management-url",
        &management,
        "--sigv4",
        "--region",
        "us-east-1",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new(env!("CARGO_BIN_EXE_wsprobe"))
                .args(&args)
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .env("AWS_ACCESS_KEY_ID", "AKIDWSPROBERUN")
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    "wJalrXUtnFEMI/K7MDENG+runEXAMPLEKEY",
                )
                .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
                .env("AWS_CONFIG_FILE", dir.join("none"))
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_SESSION_TOKEN")
                .stdin(Stdio::null())
                .output()
                .expect("running wsprobe")
        }
    });
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("wsprobe finished within a minute")
        .expect("the blocking task ran");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let head = tokio::time::timeout(crate::support::TIMEOUT, heads.recv()).await;
    let head = head.ok().flatten().unwrap_or_default().to_lowercase();
    assert!(
        head.contains("\nauthorization: aws4-hmac-sha256 credential=akidwsproberun/"),
        "{head}"
    );
}
