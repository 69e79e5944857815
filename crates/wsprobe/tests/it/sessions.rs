//! Integration tests: sessions that last (`--keepalive`, `--reconnect`, `--on-connect`, and
//! the script's `keepalive` command and `reconnect` connect option), with the real binary
//! against `serve` at millisecond limits (`--idle-timeout`, `--max-connection-duration`)
//! or against the going-away server of the test support, which records every handshake
//! (with its headers and time) and every text, and closes with 1001 after a moment.
//! Timing is only checked with generous bounds; every wait has a deadline.

use std::path::Path;
use std::time::Duration;

use wsprobe_serve::ServeEvent;

use crate::connect::{Backend, Pty, Run, run, temp_home, wsprobe};
use crate::support::{self, Handshake, Seen};

/// `serve` with these flags, on a runtime of its own.
fn serve(args: &[&str]) -> Backend {
    Backend::start(support::serve_config(args))
}

/// A handshake the going-away server saw: its number, when, its headers, its answer.
type SeenHandshake = (usize, std::time::Instant, Vec<(String, String)>, Handshake);

fn handshakes(seen: &[Seen]) -> Vec<SeenHandshake> {
    seen.iter()
        .filter_map(|event| match event {
            Seen::Handshake {
                n,
                at,
                headers,
                answer,
            } => Some((*n, *at, headers.clone(), *answer)),
            _ => None,
        })
        .collect()
}

/// The texts connection `n` sent, in order.
fn texts(seen: &[Seen], connection: usize) -> Vec<String> {
    seen.iter()
        .filter_map(|event| match event {
            Seen::Text { n, text } if *n == connection => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}

/// Writes `script` to `name` in `home` and runs it with `--url url` and `more`.
fn run_script(home: &Path, name: &str, script: &str, url: &str, more: &[&str]) -> Run {
    let path = home.join(name);
    std::fs::write(&path, script).expect("writing the script");
    let path = path.to_str().expect("a UTF-8 path");
    run(wsprobe(home).args(["run", path, "--url", url]).args(more))
}

/// How many connections `serve` accepted, from its events so far.
fn connections_opened(events: &mut tokio::sync::broadcast::Receiver<ServeEvent>) -> usize {
    let mut count = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, ServeEvent::Connected { .. }) {
            count += 1;
        }
    }
    count
}

// ---------------------------------------------------------------------------------------
// Keepalive

#[test]
fn a_keepalive_message_keeps_a_session_past_the_idle_timeout_and_its_answers_are_not_shown() {
    let backend = serve(&["--idle-timeout", "400ms"]);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "--keepalive",
        "100ms",
        "--keepalive-message",
        r#"{"action":"keepalive"}"#,
        "-x",
        "/wait 1200ms",
        "-x",
        "/keepalive",
        "-w",
        "0",
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert!(
        !result.stderr.contains("closed by the server"),
        "{}",
        result.stderr
    );
    // The stage answers each unrouted keepalive with a `Forbidden` error frame: counted,
    // never printed as a message.
    assert!(!result.stdout.contains("Forbidden"), "{}", result.stdout);
    let counts = result
        .stderr
        .lines()
        .find(|line| line.contains("sent,") && line.contains("answered"))
        .unwrap_or_else(|| panic!("no keepalive counts in:\n{}", result.stderr));
    assert!(!counts.contains(" 0 sent"), "{counts}");
    assert!(!counts.contains(" 0 answered"), "{counts}");
}

#[test]
fn keepalive_pongs_are_counted_and_not_shown_even_with_control_frames_on() {
    let backend = serve(&[]);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-P",
        "--keepalive",
        "100ms",
        "-x",
        "/wait 500ms",
        "-x",
        "/ping mine",
        "-x",
        "/expect pong mine",
        "-x",
        "/keepalive",
        "-w",
        "0",
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let pongs: Vec<&str> = result
        .stderr
        .lines()
        .filter(|line| line.contains("pong"))
        .collect();
    // Only the pong of our own ping is shown (and matched).
    assert!(pongs.iter().all(|line| line.contains("mine")), "{pongs:?}");
    result.assert_stderr_has("keepalive: a ping after every 100ms");
    assert!(!result.stderr.contains(" 0 answered"), "{}", result.stderr);
}

#[test]
fn without_a_keepalive_or_with_pings_only_the_idle_timeout_closes_the_session() {
    // serve, like API Gateway, does not count pings as activity.
    let backend = serve(&["--idle-timeout", "400ms"]);
    let home = temp_home();
    for extra in [&[][..], &["--keepalive", "100ms"][..]] {
        let result = run(wsprobe(home.path())
            .args(["connect", &backend.url()])
            .args(extra)
            .args(["-x", "/wait 1200ms", "-w", "0"]));
        result.assert_stderr_has("connection closed by the server: 1001");
    }
}

#[test]
fn a_script_keepalive_holds_the_connection_and_expect_never_sees_its_answers() {
    let backend = serve(&["--idle-timeout", "400ms"]);
    let home = temp_home();
    let result = run_script(
        home.path(),
        "keepalive.wsp",
        "connect ${WS_URL}\n\
         keepalive 100ms {\"action\":\"keepalive\"}\n\
         expect nothing within 1200ms\n\
         send send still-here\n\
         expect echo\n",
        &backend.url(),
        &[],
    );
    result.assert_code(0);
}

// ---------------------------------------------------------------------------------------
// Reconnect

#[test]
fn reconnect_resends_the_headers_and_on_connect_lines_and_stops_on_401_with_exit_3() {
    let backend = serve(&[]);
    let plan = vec![
        Handshake::Accept,
        Handshake::Accept,
        Handshake::Accept,
        Handshake::Refuse(401),
    ];
    let (url, mut events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(200),
    ));
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &url,
        "--reconnect",
        "-H",
        "X-Trace: t-1",
        "--auth",
        "Bearer sekrit-token",
        "--on-connect",
        "subscribe a",
        "--on-connect",
        "/text second",
        "-w",
        "8s",
    ]));
    let seen = support::seen_so_far(&mut events);
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    let handshakes = handshakes(&seen);
    assert_eq!(handshakes.len(), 4, "{seen:?}");
    for (n, _, headers, _) in &handshakes {
        assert_eq!(header(headers, "x-trace"), Some("t-1"), "handshake {n}");
        assert_eq!(
            header(headers, "authorization"),
            Some("Bearer sekrit-token"),
            "handshake {n}"
        );
    }
    for n in 0..3 {
        assert_eq!(texts(&seen, n), ["subscribe a", "second"], "connection {n}");
    }
    result.assert_stderr_has("reconnecting after 1001 Going away (attempt 1,");
    result.assert_stderr_has("reconnected in");
    result.assert_stderr_has("401");
    assert!(!result.stderr.contains("sekrit"), "{}", result.stderr);
    assert!(!result.stdout.contains("sekrit"), "{}", result.stdout);
}

#[test]
fn reconnect_backs_off_more_across_consecutive_failures_and_starts_over_after_an_open() {
    let backend = serve(&[]);
    let plan = vec![
        Handshake::Accept,
        Handshake::Refuse(503),
        Handshake::Refuse(503),
        Handshake::Refuse(503),
        Handshake::Accept,
        Handshake::Refuse(403),
    ];
    let (url, mut events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(100),
    ));
    let home = temp_home();
    let result = run(wsprobe(home.path()).args(["connect", &url, "--reconnect", "-w", "20s"]));
    let seen = support::seen_so_far(&mut events);
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    let at: Vec<std::time::Instant> = handshakes(&seen).iter().map(|h| h.1).collect();
    assert_eq!(at.len(), 6, "{seen:?}");
    let closed: Vec<std::time::Instant> = seen
        .iter()
        .filter_map(|event| match event {
            Seen::Closed { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2, "{seen:?}");
    // The first retry after a connection that had been open comes within a second.
    let first_retry = at[1].duration_since(closed[0]);
    assert!(first_retry < Duration::from_secs(1), "{first_retry:?}");
    // Never without a delay; each failure waits longer (the backoff's ranges, 125-250ms,
    // 250-500ms, 500ms-1s, 1-2s, do not overlap, so compare two steps apart).
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1].duration_since(w[0])).collect();
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(100)),
        "{gaps:?}"
    );
    assert!(gaps[3] > gaps[1], "{gaps:?}");
    // After the connection that opened (handshake 4), it starts over: the retry after
    // its close is quick again.
    let after_open = at[5].duration_since(closed[1]);
    assert!(after_open < Duration::from_secs(1), "{after_open:?}");
    result.assert_stderr_has("reconnect attempt 3 failed");
    result.assert_stderr_has("attempt 4,");
}

#[test]
fn reconnect_to_a_server_that_is_gone_never_spins_and_gives_up_after_the_maximum() {
    let backend = serve(&[]);
    // One connection, then the listener is gone: every attempt is refused at TCP.
    let (url, _events) = backend.block_on(support::spawn_going_away_server(
        vec![Handshake::Accept],
        Duration::from_millis(100),
    ));
    let home = temp_home();
    let started = std::time::Instant::now();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &url,
        "--reconnect",
        "--reconnect-max",
        "3",
        "-w",
        "20s",
    ]));
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    result.assert_stderr_has("reconnect attempt 3 failed");
    assert!(!result.stderr.contains("attempt 4"), "{}", result.stderr);
    // Three delays of at least 125ms, 250ms and 500ms: no spinning.
    assert!(started.elapsed() >= Duration::from_millis(800));
    result.assert_stderr_has("connection refused");
}

#[test]
fn our_own_close_is_not_reconnected_even_with_always() {
    let backend = serve(&[]);
    let mut events = backend.events();
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "--reconnect",
        "always",
        "-x",
        "/close 1000",
        "-w",
        "1s",
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert!(!result.stderr.contains("reconnecting"), "{}", result.stderr);
    assert_eq!(connections_opened(&mut events), 1);
}

#[test]
fn an_on_connect_line_that_does_not_parse_is_a_usage_error() {
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        "ws://127.0.0.1:9/dev",
        "--on-connect",
        "/sned hi",
    ]));
    assert_eq!(result.code, Some(2), "{}", result.stderr);
    result.assert_stderr_has("--on-connect");
    result.assert_stderr_has("sned");
}

#[test]
fn a_failing_on_connect_line_is_reported_by_its_text() {
    let backend = serve(&[]);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "--on-connect",
        "/expect text never within 200ms",
        "-w",
        "0",
    ]));
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    result.assert_stderr_has("--on-connect `/expect text never within 200ms`");
}

#[test]
fn a_script_connection_with_reconnect_survives_the_maximum_connection_duration() {
    let backend = serve(&["--max-connection-duration", "400ms"]);
    let mut events = backend.events();
    let home = temp_home();
    let body = "  reconnect max 3\n\
                send send one\n\
                expect echo\n\
                sleep 700ms\n\
                send send two\n\
                expect echo\n";
    let with = home.path().join("with.wsp");
    std::fs::write(&with, format!("connect ${{WS_URL}}\n{body}")).expect("writing");
    let result = run(wsprobe(home.path()).args([
        "run",
        with.to_str().expect("a UTF-8 path"),
        "--url",
        &backend.url(),
        "--on-connect",
        "/send send hello-again",
    ]));
    result.assert_code(0);
    result.assert_stderr_has("reconnecting after 1001 Going away");
    assert!(connections_opened(&mut events) >= 2);

    // Without the option, the second send finds the connection closed.
    let without = home.path().join("without.wsp");
    let body = body.replace("  reconnect max 3\n", "");
    std::fs::write(&without, format!("connect ${{WS_URL}}\n{body}")).expect("writing");
    let result = run(wsprobe(home.path()).args([
        "run",
        without.to_str().expect("a UTF-8 path"),
        "--url",
        &backend.url(),
    ]));
    assert_eq!(result.code, Some(1), "{}", result.stdout);
}

#[test]
fn an_expect_waiting_when_the_connection_ends_goes_on_on_the_new_connection() {
    let backend = serve(&["--max-connection-duration", "400ms"]);
    let home = temp_home();
    // Each open sends an unrouted message: the stage answers with an error frame that
    // names the connection. The second id can only come from the reconnected connection.
    let result = run_script(
        home.path(),
        "across.wsp",
        "connect ${WS_URL}\n\
         \x20 reconnect\n\
         capture first = json $.connectionId\n\
         expect json $.connectionId != \"${first}\" within 4s\n",
        &backend.url(),
        &["--on-connect", r#"{"action":"nope"}"#],
    );
    result.assert_code(0);
}

#[test]
fn expect_closed_still_sees_the_close_that_caused_the_reconnect() {
    let backend = serve(&["--max-connection-duration", "300ms"]);
    let home = temp_home();
    let result = run_script(
        home.path(),
        "closed.wsp",
        "connect ${WS_URL}\n  reconnect\n\
         expect closed 1001 within 3s\n\
         send send back\n\
         expect echo\n",
        &backend.url(),
        &[],
    );
    result.assert_code(0);
    result.assert_stderr_has("reconnected in");
}

#[test]
fn a_sleep_reconnects_at_once_and_reruns_the_on_connect_lines() {
    let backend = serve(&["--max-connection-duration", "300ms"]);
    let mut events = backend.events();
    let home = temp_home();
    // Nothing after the sleep: only the sleep itself can have reconnected.
    let result = run_script(
        home.path(),
        "sleep.wsp",
        "connect ${WS_URL}\n  reconnect\nsleep 1500ms\n",
        &backend.url(),
        &["--on-connect", "/send send again"],
    );
    result.assert_code(0);
    let mut opened = 0;
    let mut sent = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            ServeEvent::Connected { .. } => opened += 1,
            ServeEvent::Message { .. } => sent += 1,
            _ => {}
        }
    }
    assert!(opened >= 3, "{opened} connections");
    // One --on-connect send per connection (the last may have opened as the sleep ended).
    assert!(
        sent + 1 >= opened && sent <= opened,
        "{sent} sent, {opened} opened"
    );
}

#[test]
fn a_script_reconnect_refused_with_403_fails_with_exit_3() {
    let backend = serve(&[]);
    let plan = vec![Handshake::Accept, Handshake::Refuse(403)];
    let (url, _events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(100),
    ));
    let home = temp_home();
    let result = run_script(
        home.path(),
        "refused.wsp",
        "connect ${WS_URL}\n  reconnect\nsleep 500ms\ntext hello\n",
        &url,
        &[],
    );
    result.assert_code(3);
    assert!(
        result.stdout.contains("could not reconnect"),
        "{}",
        result.stdout
    );
}

// ---------------------------------------------------------------------------------------
// At the prompt

#[test]
fn the_prompt_shows_each_reconnect_and_keeps_going() {
    let backend = serve(&[]);
    let plan = vec![Handshake::Accept, Handshake::Accept];
    let (url, mut events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(300),
    ));
    let home = temp_home();
    let mut pty = Pty::spawn(
        home.path(),
        &[&url, "--reconnect", "--on-connect", "hello again"],
        false,
    );
    pty.wait_connected();
    pty.expect("connection closed by the server: 1001 Going away");
    pty.expect("reconnecting after 1001 Going away (attempt 1,");
    pty.expect("reconnected in");
    pty.type_line("/keepalive");
    pty.expect("keepalive off; 0 sent, 0 answered");
    assert_eq!(pty.quit_at_prompt(), 0);
    let seen = support::seen_so_far(&mut events);
    assert_eq!(
        texts(&seen, 0).first().map(String::as_str),
        Some("hello again")
    );
    assert_eq!(
        texts(&seen, 1).first().map(String::as_str),
        Some("hello again")
    );
}

#[test]
fn a_line_typed_while_reconnecting_is_queued_and_runs_once_reconnected() {
    let backend = serve(&[]);
    // Two refusals first: the reconnect takes at least 0.875 s of backoff.
    let plan = vec![
        Handshake::Accept,
        Handshake::Refuse(503),
        Handshake::Refuse(503),
        Handshake::Accept,
    ];
    let (url, mut events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(300),
    ));
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[&url, "--reconnect"], false);
    pty.wait_connected();
    pty.expect("reconnecting after 1001 Going away (attempt 1,");
    pty.type_line("typed meanwhile");
    pty.expect("queued: runs once reconnected");
    pty.expect("reconnected in");
    // The fourth handshake's connection (n = 3) gets the line.
    let text = backend.block_on(support::within("the queued line", async {
        loop {
            match events.recv().await {
                Some(Seen::Text { n, text }) => break (n, text),
                Some(_) => continue,
                None => panic!("the server stopped reporting"),
            }
        }
    }));
    assert_eq!(text, (3, "typed meanwhile".to_owned()));
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn each_reconnect_is_signed_anew_with_sigv4() {
    let backend = serve(&[]);
    // Held for more than a second, so the second signature has a later X-Amz-Date.
    let plan = vec![Handshake::Accept, Handshake::Accept, Handshake::Refuse(403)];
    let (url, mut events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(1100),
    ));
    let home = temp_home();
    let result = run(wsprobe(home.path())
        .env("AWS_ACCESS_KEY_ID", "AKIDSESSIONSTEST")
        .env("AWS_SECRET_ACCESS_KEY", "sessions-test-secret")
        .env("AWS_REGION", "eu-west-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .args(["connect", &url, "--sigv4", "--reconnect", "-w", "10s"]));
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    let seen = support::seen_so_far(&mut events);
    let signed: Vec<(String, String)> = handshakes(&seen)
        .iter()
        .map(|(n, _, headers, _)| {
            let authorization = header(headers, "authorization")
                .unwrap_or_else(|| panic!("handshake {n} is not signed"));
            assert!(
                authorization.starts_with("AWS4-HMAC-SHA256 "),
                "{authorization}"
            );
            let date = header(headers, "x-amz-date").unwrap_or_default();
            (authorization.to_owned(), date.to_owned())
        })
        .collect();
    assert_eq!(signed.len(), 3, "{seen:?}");
    assert_ne!(signed[0].1, signed[1].1, "the same X-Amz-Date");
    assert_ne!(signed[0].0, signed[1].0, "the same signature");
    assert!(!result.stderr.contains("sessions-test-secret"));
}

#[test]
fn a_reconnect_refused_during_a_wait_ends_the_session_at_once_with_exit_3() {
    let backend = serve(&[]);
    let plan = vec![Handshake::Accept, Handshake::Refuse(401)];
    let (url, _events) = backend.block_on(support::spawn_going_away_server(
        plan,
        Duration::from_millis(200),
    ));
    let home = temp_home();
    let started = std::time::Instant::now();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &url,
        "--reconnect",
        "-x",
        "/wait 8s",
        "-w",
        "0",
    ]));
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    result.assert_stderr_has("reconnect attempt 1 failed");
    result.assert_stderr_has("401");
    // The /wait was cut short by the refused reconnect.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_transcript_goes_on_across_a_reconnect() {
    let backend = serve(&["--max-connection-duration", "400ms"]);
    let home = temp_home();
    let log = home.path().join("log.jsonl");
    let result = run_script(
        home.path(),
        "log.wsp",
        "connect ${WS_URL}\n  reconnect max 3\nsleep 700ms\nsend send after\nexpect echo\n",
        &backend.url(),
        &["--log", log.to_str().expect("a UTF-8 path")],
    );
    assert_eq!(result.code, Some(0), "{}{}", result.stdout, result.stderr);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .expect("the transcript")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|line| line["kind"].as_str().unwrap_or_default())
        .collect();
    let reconnect = kinds
        .iter()
        .position(|kind| *kind == "reconnect")
        .unwrap_or_else(|| panic!("no reconnect line in {kinds:?}"));
    assert_eq!(lines[reconnect]["attempt"], 1, "{}", lines[reconnect]);
    assert_eq!(lines[reconnect]["after_code"], 1001, "{}", lines[reconnect]);
    // The new handshake and the frames of the new connection follow it.
    assert_eq!(
        kinds[reconnect + 1..reconnect + 3],
        ["request", "response"],
        "{kinds:?}"
    );
    let after = |dir: &str, data: &str| {
        lines[reconnect..]
            .iter()
            .any(|line| line["dir"] == dir && line["data"] == data)
    };
    assert!(
        after("out", r#"{"action":"send","body":"after"}"#),
        "{kinds:?}"
    );
    assert!(after("in", r#""after""#), "{kinds:?}");
}
