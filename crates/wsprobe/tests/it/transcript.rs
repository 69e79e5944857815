//! Integration tests: `--log FILE` (the JSON-lines transcript of `run` and `connect`) and
//! `connect --record FILE.wsp` (a prompt session saved as a script that `run` replays).
//! The real binary against `serve` in-process on port 0; every file is read back whole and
//! its raw bytes searched for the secrets the session used.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;
use wsprobe_core::aws::IamKey;
use wsprobe_core::secret::Secret;
use wsprobe_serve::ServeConfig;

use crate::connect::{Backend, temp_home};
use crate::support::{self, TIMEOUT};

const TOKEN: &str = "tok-5ecret-123";
const API_KEY: &str = "key-5ecret-456";
const QUERY_TOKEN: &str = "qry-5ecret-789";
const ACCESS_KEY: &str = "AKIDWSPROBETEST";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLE";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessionTOKEN";

/// A server that wants [`TOKEN`] and [`API_KEY`] and answers `whoami`.
fn guarded_backend() -> Backend {
    let mut config = ServeConfig {
        tokens: vec![Secret::new(TOKEN)],
        api_keys: vec![Secret::new(API_KEY)],
        ..ServeConfig::default()
    };
    config
        .routes
        .insert("whoami", wsprobe_serve::RouteBehaviour::Whoami);
    Backend::start(config)
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `wsprobe ARGS` in `dir` with a cleared environment plus `env`, within [`TIMEOUT`].
fn wsprobe(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = assert_cmd::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .envs(env.iter().copied())
        .timeout(TIMEOUT)
        .output()
        .expect("running wsprobe");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The transcript's lines, each checked: a JSON object with a `ts` in RFC 3339 with
/// microseconds (UTC), a `kind` and a `conn`; `dir` is `in` or `out` where present; the
/// times never go backwards.
fn read_transcript(path: &Path) -> (String, Vec<Value>) {
    let raw = std::fs::read_to_string(path).expect("the transcript was written");
    let stamp = Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").expect("a regex");
    let mut lines = Vec::new();
    let mut previous = None;
    for line in raw.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{raw}"));
        let ts = value["ts"].as_str().expect("a ts");
        assert!(stamp.is_match(ts), "{ts}");
        let time = humantime::parse_rfc3339(ts).expect("RFC 3339");
        if let Some(previous) = previous {
            assert!(time >= previous, "time went backwards at {line}");
        }
        previous = Some(time);
        assert!(value["kind"].is_string(), "{line}");
        assert!(value["conn"].is_u64(), "{line}");
        if let Some(dir) = value.get("dir") {
            assert!(dir == "in" || dir == "out", "{line}");
        }
        lines.push(value);
    }
    assert!(raw.ends_with('\n'), "the last line is complete: {raw}");
    (raw, lines)
}

fn find<'a>(lines: &'a [Value], what: &str, test: impl Fn(&Value) -> bool) -> &'a Value {
    lines
        .iter()
        .find(|line| test(line))
        .unwrap_or_else(|| panic!("no {what} in {lines:#?}"))
}

fn frame(line: &Value, dir: &str, kind: &str) -> bool {
    line["kind"] == "frame" && line["dir"] == dir && line["type"] == kind
}

#[track_caller]
fn assert_no_secret(raw: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!raw.contains(secret), "{secret} in the transcript:\n{raw}");
    }
    let signature = Regex::new(r"Signature=[0-9a-f]{64}").expect("a regex");
    assert!(
        !signature.is_match(raw),
        "a signature in the transcript:\n{raw}"
    );
}

#[test]
fn a_run_transcript_has_the_handshake_every_frame_and_the_close_and_no_secret() {
    let backend = guarded_backend();
    let dir = temp_home();
    let script = dir.path().join("session.wsp");
    std::fs::write(
        &script,
        "connect ${WS_URL}\n\
         send send \"Hello World!\"\n\
         expect echo\n\
         send whoami\n\
         capture me = json $.connectionId\n\
         text my token is ${TOKEN}\n\
         ping beat\n\
         expect pong beat\n\
         binary 48656c6c6f\n\
         expect closed 1003\n",
    )
    .expect("writing the script");
    let url = format!("{}?token={QUERY_TOKEN}&page=2", backend.url());
    let log = dir.path().join("t.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let run = wsprobe(
        dir.path(),
        &[
            "run",
            "session.wsp",
            "--url",
            &url,
            "--auth",
            &format!("Bearer {TOKEN}"),
            "--api-key",
            API_KEY,
            "--var",
            &format!("TOKEN={TOKEN}"),
            "--log",
            &log_arg,
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.all());
    let (raw, lines) = read_transcript(&log);
    assert_no_secret(&raw, &[TOKEN, API_KEY, QUERY_TOKEN]);

    let request = find(&lines, "a request", |l| l["kind"] == "request");
    assert_eq!(request["dir"], "out");
    assert_eq!(request["method"], "GET");
    assert_eq!(request["script"], "session.wsp");
    assert!(
        request["url"]
            .as_str()
            .is_some_and(|url| url.ends_with("/dev?token=<redacted>&page=2")),
        "{request}"
    );
    assert_eq!(request["headers"]["authorization"], "<redacted>");
    assert_eq!(request["headers"]["x-api-key"], "<redacted>");
    let response = find(&lines, "a response", |l| l["kind"] == "response");
    assert_eq!(
        (&response["dir"], &response["status"]),
        (&"in".into(), &101.into())
    );

    let sent = find(&lines, "the send", |l| frame(l, "out", "text"));
    assert_eq!(sent["data"], r#"{"action":"send","body":"Hello World!"}"#);
    let position = |test: &dyn Fn(&Value) -> bool| lines.iter().position(test);
    let sent_at = position(&|l| frame(l, "out", "text"));
    let echo_at = position(&|l| frame(l, "in", "text") && l["data"] == r#""Hello World!""#);
    assert!(
        echo_at.is_some() && sent_at < echo_at,
        "the send comes before its echo"
    );
    // The whoami answer teaches the transcript the connection id; the lines after it say it.
    let answer = find(&lines, "the whoami answer", |l| {
        frame(l, "in", "text")
            && l["data"]
                .as_str()
                .is_some_and(|d| d.contains("connectionId"))
    });
    let id: Value = serde_json::from_str(answer["data"].as_str().unwrap_or_default())
        .expect("the answer is JSON");
    find(&lines, "the token text, redacted", |l| {
        frame(l, "out", "text") && l["data"] == "my token is <redacted>"
    });
    let later = find(&lines, "the ping", |l| frame(l, "out", "ping"));
    assert_eq!(later["connection_id"], id["connectionId"]);
    assert_eq!(later["base64"], "YmVhdA==");
    find(&lines, "the pong", |l| {
        frame(l, "in", "pong") && l["base64"] == "YmVhdA=="
    });
    find(&lines, "the binary frame", |l| {
        frame(l, "out", "binary") && l["base64"] == "SGVsbG8="
    });
    let close = find(&lines, "the server's close", |l| frame(l, "in", "close"));
    assert_eq!(close["code"], 1003);
    assert!(close["reason"].is_string());
}

#[test]
fn signed_handshakes_leave_no_signature_credential_or_session_token() {
    let backend = Backend::start(ServeConfig {
        iam_keys: vec![IamKey::parse(&format!("{ACCESS_KEY}:{AWS_SECRET}")).expect("a key")],
        ..ServeConfig::default()
    });
    let dir = temp_home();
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
        ("AWS_REGION", "us-east-1"),
    ];
    for flag in ["--sigv4", "--sigv4-query"] {
        let log = dir.path().join(format!("{flag}.jsonl"));
        let log_arg = log.to_string_lossy().into_owned();
        let url = backend.url();
        let run = wsprobe(
            dir.path(),
            &[
                "connect",
                &url,
                flag,
                "-x",
                "/send send \"signed\"",
                "-w",
                "200ms",
                "--log",
                &log_arg,
            ],
            &env,
        );
        assert_eq!(run.code, Some(0), "{flag}: {}", run.all());
        let (raw, lines) = read_transcript(&log);
        assert_no_secret(&raw, &[AWS_SECRET, SESSION_TOKEN, "EXAMPLEsession"]);
        let request = find(&lines, "a request", |l| l["kind"] == "request");
        if flag == "--sigv4" {
            assert_eq!(
                request["headers"]["authorization"], "<redacted>",
                "{request}"
            );
            assert_eq!(request["headers"]["x-amz-security-token"], "<redacted>");
        } else {
            let url = request["url"].as_str().unwrap_or_default();
            assert!(url.contains("X-Amz-Signature=<redacted>"), "{url}");
            assert!(url.contains("X-Amz-Security-Token=<redacted>"), "{url}");
        }
        find(&lines, "the echo", |l| {
            frame(l, "in", "text") && l["data"] == "\"signed\""
        });
    }
}

#[test]
fn a_refused_handshake_is_logged_with_its_status_and_body() {
    let backend = guarded_backend();
    let dir = temp_home();
    let log = dir.path().join("refused.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let url = backend.url();
    let run = wsprobe(
        dir.path(),
        &[
            "connect",
            &url,
            "--api-key",
            "wrong-key-000",
            "-x",
            "hi",
            "--log",
            &log_arg,
        ],
        &[],
    );
    assert_eq!(run.code, Some(3), "{}", run.all());
    let (raw, lines) = read_transcript(&log);
    assert_no_secret(&raw, &["wrong-key-000"]);
    let response = find(&lines, "the refusal", |l| l["kind"] == "response");
    assert_eq!(response["status"], 403, "{response}");
    assert!(
        response["body"]
            .as_str()
            .is_some_and(|b| b.contains("Forbidden"))
    );

    // Nothing listens: no HTTP answer, a connect_error line.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dead = format!("ws://127.0.0.1:{port}/dev");
    let run = wsprobe(
        dir.path(),
        &["connect", &dead, "-x", "hi", "--log", &log_arg],
        &[],
    );
    assert_eq!(run.code, Some(3), "{}", run.all());
    let (_, lines) = read_transcript(&log);
    find(&lines, "a connect error", |l| {
        l["kind"] == "connect_error" && l["error"].is_string()
    });
}

#[test]
fn a_server_that_dies_mid_session_leaves_a_complete_transcript() {
    let backend = guarded_backend();
    let url = backend.block_on(support::spawn_dying_server(1));
    let dir = temp_home();
    let log = dir.path().join("dying.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let run = wsprobe(
        dir.path(),
        &[
            "connect",
            &url,
            "-x",
            "one",
            "-x",
            "/wait 300ms",
            "-x",
            "two",
            "--log",
            &log_arg,
        ],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.all());
    let (_, lines) = read_transcript(&log);
    find(&lines, "the echo", |l| {
        frame(l, "in", "text") && l["data"] == "one"
    });
    let dropped = find(&lines, "the drop", |l| l["kind"] == "dropped");
    assert_eq!(
        (&dropped["dir"], &dropped["code"]),
        (&"in".into(), &1006.into())
    );
}

#[test]
fn sigterm_leaves_a_complete_transcript_ending_with_our_close() {
    let backend = guarded_backend();
    let dir = temp_home();
    let log = dir.path().join("term.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let url = backend.url();
    let auth = format!("Bearer {TOKEN}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args([
            "connect",
            &url,
            "--auth",
            &auth,
            "--api-key",
            API_KEY,
            "-x",
            "hello",
            "-x",
            "/wait 1m",
            "--log",
            &log_arg,
        ])
        .env("NO_COLOR", "1")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running wsprobe");
    let stderr_lines = support::line_channel(child.stderr.take().expect("stderr is piped"));
    let stderr = support::read_until(&stderr_lines, "connected to");
    let deadline = Instant::now() + TIMEOUT;
    // The text frame has been sent once the transcript says so.
    while !std::fs::read_to_string(&log).is_ok_and(|raw| raw.contains("\"data\":\"hello\"")) {
        assert!(Instant::now() < deadline, "the send was not logged");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "wsprobe did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130), "{stderr}");
    let (raw, lines) = read_transcript(&log);
    assert_no_secret(&raw, &[TOKEN, API_KEY]);
    let close = find(&lines, "our close", |l| frame(l, "out", "close"));
    assert_eq!(close["code"], 1001, "{close}");
    find(&lines, "the answer to it", |l| frame(l, "in", "close"));
}

// ---------------------------------------------------------------------------------------
// connect --record

/// Replays `script` (in `dir`) against a fresh [`guarded_backend`], with the credentials
/// in the variables the recording names.
fn replay(dir: &Path, script: &str) -> Output {
    let fresh = guarded_backend();
    let url = fresh.url();
    let auth = format!("Bearer {TOKEN}");
    wsprobe(
        dir,
        &["run", script, "--url", &url],
        &[("WSPROBE_AUTH", &auth), ("WSPROBE_API_KEY", API_KEY)],
    )
}

/// `wsprobe connect --record NAME` at a pseudo-terminal, with a token and an API key,
/// against a fresh guarded backend; the recording's path.
fn recording_at_the_prompt(
    home: &std::path::Path,
    name: &str,
) -> (Backend, std::path::PathBuf, crate::connect::Pty) {
    let record = home.join(name);
    let backend = guarded_backend();
    let auth = format!("Bearer {TOKEN}");
    let pty = crate::connect::Pty::spawn(
        home,
        &[
            &backend.url(),
            "--auth",
            &auth,
            "--api-key",
            API_KEY,
            "--record",
            &record.to_string_lossy(),
        ],
        false,
    );
    (backend, record, pty)
}

#[track_caller]
fn assert_has(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "no {needle:?} in:\n{haystack}");
}

#[test]
fn a_session_recorded_at_the_prompt_replays_green_against_a_fresh_server() {
    let home = temp_home();
    let (backend, record, mut pty) = recording_at_the_prompt(home.path(), "session.wsp");
    let url = backend.url();
    pty.wait_connected();
    pty.type_line(r#"/send send "Hello World!""#);
    pty.expect("✓ echo");
    pty.type_line("/pretty off");
    pty.expect("pretty JSON off");
    pty.type_line("/send whoami");
    pty.expect(r#"< {"connectionId":""#);
    let id_line = pty.expect("}");
    pty.type_line("hello there");
    pty.expect("gateway error: Forbidden");
    pty.type_line("/help send");
    pty.expect("send");
    assert_eq!(pty.quit_at_prompt(), 0);
    drop(backend);

    let script = std::fs::read_to_string(&record).expect("the recording was written");
    let (header, body) = script
        .split_once("\n\n")
        .expect("a header, then the script");
    let when = header
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# Recorded by `wsprobe connect --record` on "))
        .unwrap_or_else(|| panic!("no date in {header}"));
    humantime::parse_rfc3339(when).expect("an RFC 3339 date");
    assert_has(header, &format!("# against {url}"));
    assert_has(
        header,
        "# Replay: wsprobe run session.wsp --url URL (with WSPROBE_AUTH, WSPROBE_API_KEY set)",
    );
    assert_eq!(
        body,
        "connect ${WS_URL}\n  \
           auth ${WSPROBE_AUTH}\n  \
           api-key ${WSPROBE_API_KEY}\n\
         send send \"Hello World!\"\n\
         expect echo\n\
         send whoami\n\
         expect json-subset {}\n\
         text hello there\n\
         expect json-subset {\"message\":\"Forbidden\"}\n",
        "{script}"
    );
    let id = id_line.trim_matches(|c: char| c == '"' || c.is_whitespace());
    for secret in [TOKEN, API_KEY, id] {
        assert!(
            !script.contains(secret),
            "{secret:?} in the recording:\n{script}"
        );
    }

    let run = replay(home.path(), "session.wsp");
    assert_eq!(run.code, Some(0), "{}\n{script}", run.all());
    assert_has(&run.stdout, "1 passed, 0 failed");
    // The file holds no credential: without the variables the replay cannot start.
    let fresh = guarded_backend();
    let url = fresh.url();
    let run = wsprobe(home.path(), &["run", "session.wsp", "--url", &url], &[]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert_has(&run.stderr, "undefined variable `WSPROBE_AUTH`");
}

#[test]
fn ctrl_c_twice_at_the_prompt_writes_the_recording() {
    use expectrl::ControlCode;
    let home = temp_home();
    let (_backend, record, mut pty) = recording_at_the_prompt(home.path(), "ctrl-c.wsp");
    pty.wait_connected();
    pty.type_line(r#"/send send "bye""#);
    pty.expect("✓ echo");
    pty.wait_prompt();
    pty.control(ControlCode::EndOfText);
    pty.expect("press Ctrl-C again");
    pty.wait_prompt();
    pty.control(ControlCode::EndOfText);
    assert_eq!(pty.exit_code(), 0);
    let script = std::fs::read_to_string(&record).expect("the recording was written");
    assert_has(&script, "send send \"bye\"\nexpect echo\n");
    let run = replay(home.path(), "ctrl-c.wsp");
    assert_eq!(run.code, Some(0), "{}\n{script}", run.all());
}

#[test]
fn a_recording_ends_with_the_servers_close_and_replays() {
    let backend = guarded_backend();
    let dir = temp_home();
    let url = backend.url();
    let auth = format!("Bearer {TOKEN}");
    let run = wsprobe(
        dir.path(),
        &[
            "connect",
            &url,
            "--auth",
            &auth,
            "--api-key",
            API_KEY,
            "-x",
            "/send send 42",
            "-x",
            "/ping",
            "-x",
            "/binary 00ff",
            "-w",
            "2s",
            "--record",
            "closed.wsp",
        ],
        &[],
    );
    // 1003 (binary frames are not supported) is not a normal close: exit 1.
    assert_eq!(run.code, Some(1), "{}", run.all());
    let script = std::fs::read_to_string(dir.path().join("closed.wsp")).expect("written");
    assert_has(&script, "send send 42\nexpect echo\n");
    assert_has(&script, "binary 00ff\nexpect closed 1003\n");
    assert_has(&run.stderr, "recorded the session to closed.wsp");
    let replayed = replay(dir.path(), "closed.wsp");
    assert_eq!(replayed.code, Some(0), "{}\n{script}", replayed.all());
}

#[test]
fn sigterm_writes_the_recording_with_the_unfinished_line_as_a_comment() {
    let backend = guarded_backend();
    let dir = temp_home();
    let record = dir.path().join("term.wsp");
    let record_arg = record.to_string_lossy().into_owned();
    let url = backend.url();
    let auth = format!("Bearer {TOKEN}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args([
            "connect",
            &url,
            "--auth",
            &auth,
            "--api-key",
            API_KEY,
            "-x",
            r#"/send send "x""#,
            "-x",
            "/wait 1m",
            "--record",
            &record_arg,
        ])
        .env("NO_COLOR", "1")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running wsprobe");
    let stderr_lines = support::line_channel(child.stderr.take().expect("stderr is piped"));
    let seen = support::read_until(&stderr_lines, "✓ echo");
    let deadline = Instant::now() + TIMEOUT;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "wsprobe did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130), "{seen}");
    let script = std::fs::read_to_string(&record).expect("the recording was written");
    assert_has(
        &script,
        "send send \"x\"\nexpect echo\n# did not finish at the prompt: wait 1m\n",
    );
    // Our closing (1001) is not part of the recording.
    assert!(!script.contains("expect closed"), "{script}");
    let run = replay(dir.path(), "term.wsp");
    assert_eq!(run.code, Some(0), "{}\n{script}", run.all());
}

#[test]
fn a_run_stopped_by_sigterm_leaves_a_complete_transcript() {
    let backend = guarded_backend();
    let dir = temp_home();
    std::fs::write(
        dir.path().join("long.wsp"),
        "connect ${WS_URL}\nsend send \"before the signal\"\nexpect echo\nsleep 1m\n",
    )
    .expect("writing the script");
    let log = dir.path().join("run.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let url = backend.url();
    let auth = format!("Bearer {TOKEN}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args([
            "run",
            "long.wsp",
            "--url",
            &url,
            "--auth",
            &auth,
            "--api-key",
            API_KEY,
            "--log",
            &log_arg,
        ])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running wsprobe");
    let deadline = Instant::now() + TIMEOUT;
    // The echo is in the transcript: the run is in its sleep.
    while !std::fs::read_to_string(&log)
        .is_ok_and(|raw| raw.contains(r#""dir":"in","type":"text""#))
    {
        assert!(Instant::now() < deadline, "the echo was not logged");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "wsprobe did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130));
    let (raw, lines) = read_transcript(&log);
    assert_no_secret(&raw, &[TOKEN, API_KEY]);
    find(&lines, "the send", |l| {
        frame(l, "out", "text") && l["data"] == r#"{"action":"send","body":"before the signal"}"#
    });
}
