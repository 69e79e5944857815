//! Integration tests: `wsprobe connect`, the real binary. At a pseudo-terminal (expectrl)
//! for the prompt; with piped stdin and `-x` (assert_cmd) for the non-interactive modes.
//! The server is the real `serve` in-process on port 0, or, for behaviours it does not
//! have (a slow handshake, silence, an odd close code), a tiny WebSocket server here.
//! Every wait has a timeout; HOME and XDG_DATA_HOME point at a temporary directory so no
//! test touches the real history file.

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use expectrl::{ControlCode, Expect as _};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wsprobe_core::secret::Secret;
use wsprobe_serve::{RunningServer, ServeConfig, ServeEvent};

use crate::support::{self, TIMEOUT};

// ---------------------------------------------------------------------------------------
// Helpers

/// A server running on a runtime of its own, so the test thread can block on the binary.
pub(crate) struct Backend {
    runtime: tokio::runtime::Runtime,
    server: Option<RunningServer>,
}

impl Backend {
    pub(crate) fn start(config: ServeConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let server = runtime.block_on(support::spawn_server(config));
        Self {
            runtime,
            server: Some(server),
        }
    }

    /// The sample echo app with its defaults.
    fn sample() -> Self {
        Self::start(ServeConfig::default())
    }

    /// The sample echo app plus the `whoami` route (`{"connectionId": …}`).
    pub(crate) fn with_whoami() -> Self {
        let mut config = ServeConfig::default();
        config
            .routes
            .insert("whoami", wsprobe_serve::RouteBehaviour::Whoami);
        Self::start(config)
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("the server runs until drop")
    }

    pub(crate) fn url(&self) -> String {
        self.server().ws_url()
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<ServeEvent> {
        self.server().events()
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The id and handshake headers of the next connection.
    fn next_connection(
        &self,
        events: &mut broadcast::Receiver<ServeEvent>,
    ) -> (String, Vec<(String, String)>) {
        self.block_on(support::wait_event(events, |event| match event {
            ServeEvent::Connected {
                connection_id,
                headers,
                ..
            } => Some((connection_id.clone(), headers.clone())),
            _ => None,
        }))
    }

    /// Sends `body` to a connection through the @connections API.
    fn push(&self, connection_id: &str, body: &str) {
        let server = self.server();
        let path = support::connection_path(server, connection_id);
        let response = self.block_on(support::http(
            server.addr(),
            "POST",
            &path,
            &[],
            body.as_bytes(),
        ));
        assert_eq!(response.status, 200, "{}", response.text());
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// The real binary with a clean environment: no colour, no credentials from the
/// environment, and a temporary home.
pub(crate) fn wsprobe(home: &Path) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_wsprobe"));
    command
        .env("NO_COLOR", "1")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .timeout(TIMEOUT);
    command
}

pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn run(command: &mut assert_cmd::Command) -> Run {
    let output = command.output().expect("running wsprobe");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Run {
    /// Fails the test, showing both outputs, unless it exited with `code`.
    #[track_caller]
    pub(crate) fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// Fails the test, showing stderr, unless stderr contains `needle`.
    #[track_caller]
    pub(crate) fn assert_stderr_has(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "no {needle:?} in stderr:\n{}",
            self.stderr
        );
    }
}

/// `wsprobe connect` at a pseudo-terminal.
pub(crate) struct Pty {
    session: expectrl::session::OsSession,
}

impl Pty {
    pub(crate) fn spawn(home: &Path, args: &[&str], color: bool) -> Self {
        let mut command = StdCommand::new(env!("CARGO_BIN_EXE_wsprobe"));
        command
            .arg("connect")
            .args(args)
            .env("TERM", "xterm")
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env_remove("WSPROBE_AUTH")
            .env_remove("WSPROBE_API_KEY");
        if color {
            command.env_remove("NO_COLOR");
        } else {
            command.env("NO_COLOR", "1");
        }
        let mut session = expectrl::Session::spawn(command).expect("spawning in a pty");
        session.set_expect_timeout(Some(TIMEOUT));
        Self { session }
    }

    /// Waits for the first prompt: from then on the editor owns the terminal, so keys
    /// such as Ctrl-C reach it as keys (before, the terminal would turn Ctrl-C into
    /// SIGINT). Nothing printed before the first prompt contains `> `.
    pub(crate) fn wait_prompt(&mut self) {
        self.expect("> ");
    }

    /// Waits for `connected to …` and the prompt drawn after it. Whichever comes first,
    /// the first prompt or the line, exactly one prompt follows the line, so nothing
    /// printed later can be mistaken for a fresh prompt.
    pub(crate) fn wait_connected(&mut self) {
        self.expect("connected to");
        self.wait_prompt();
    }

    pub(crate) fn expect(&mut self, needle: &str) -> String {
        match self.session.expect(needle) {
            Ok(found) => String::from_utf8_lossy(found.before()).into_owned(),
            Err(e) => panic!("waiting for {needle:?}: {e}"),
        }
    }

    /// Everything printed from here until the process closes the terminal.
    pub(crate) fn rest(&mut self) -> String {
        // `Eof` matches the whole of what was left: it is the match, not what is before it.
        match self.session.expect(expectrl::Eof) {
            Ok(found) => String::from_utf8_lossy(found.get(0).unwrap_or_default()).into_owned(),
            Err(e) => panic!("waiting for the end of output: {e}"),
        }
    }

    pub(crate) fn type_line(&mut self, line: &str) {
        self.session.send_line(line).expect("typing");
    }

    pub(crate) fn control(&mut self, code: ControlCode) {
        self.session.send(code).expect("sending a control key");
    }

    /// Whether the terminal is in canonical (line) mode, as it was given to wsprobe: the
    /// line editor turns it off while it owns the terminal.
    fn canonical(&self) -> bool {
        let master = self
            .session
            .get_process()
            .get_raw_handle()
            .expect("the terminal's master side");
        let mode = nix::sys::termios::tcgetattr(&master).expect("reading the terminal's mode");
        mode.local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON)
    }

    /// Ctrl-D at the next prompt, and the exit code. Keys typed between two prompts reach
    /// a terminal in line mode, where Ctrl-D is not a key but the end of a line, so it
    /// waits for the prompt drawn after the last output, as a person would.
    pub(crate) fn quit_at_prompt(&mut self) -> i32 {
        self.wait_prompt();
        self.control(ControlCode::EndOfTransmission);
        self.exit_code()
    }

    /// The exit code, waiting at most [`TIMEOUT`] (reading output so the child never
    /// blocks on a full terminal).
    pub(crate) fn exit_code(&mut self) -> i32 {
        use expectrl::process::unix::WaitStatus;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut sink = [0u8; 4096];
            let _ = self.session.try_read(&mut sink);
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => panic!("killed by {signal:?}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "wsprobe did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What a scripted test server does with a connection.
#[derive(Clone, Copy)]
enum Part {
    /// Reads everything, answers nothing.
    Silent,
    /// Echoes every text frame.
    Echo,
    /// Closes with this code when a text frame arrives.
    CloseWith(u16),
    /// Answers a route-tagged message with its `body` as is: a string unquoted.
    RawBody,
}

/// A WebSocket server for behaviours `serve` does not have. Its handshake waits for
/// `release` (if kept) before answering.
struct Scripted {
    url: String,
    release: Option<oneshot::Sender<()>>,
}

fn scripted(backend: &Backend, part: Part, hold_handshake: bool) -> Scripted {
    let listener = backend
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("binding port 0");
    let url = format!("ws://{}/dev", listener.local_addr().expect("address"));
    let (release, released) = oneshot::channel::<()>();
    backend.runtime.spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        if hold_handshake {
            let _ = released.await;
        }
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        while let Some(Ok(message)) = ws.next().await {
            match (part, message) {
                (Part::Echo, Message::Text(text)) => {
                    let _ = ws.send(Message::Text(text)).await;
                }
                (Part::RawBody, Message::Text(text)) => {
                    let Some(answer) = support::raw_body_answer(&text) else {
                        continue;
                    };
                    let _ = ws.send(Message::text(answer)).await;
                }
                (Part::CloseWith(code), Message::Text(_)) => {
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame {
                            code: code.into(),
                            reason: "scripted".into(),
                        })))
                        .await;
                }
                _ => {}
            }
        }
    });
    Scripted {
        url,
        release: Some(release),
    }
}

pub(crate) fn temp_home() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

// ---------------------------------------------------------------------------------------
// At the prompt

#[test]
fn prompt_sends_headers_shows_the_echo_and_quits_with_1000_on_ctrl_d() {
    let backend = Backend::start(ServeConfig {
        api_keys: vec![Secret::new("key-one")],
        tokens: vec![Secret::new("token-abc")],
        ..ServeConfig::default()
    });
    let mut events = backend.events();
    let home = temp_home();
    let history = home.path().join("hist").join("history");
    let history_arg = history.to_string_lossy().into_owned();
    let url = backend.url();
    let mut pty = Pty::spawn(
        home.path(),
        &[
            &url,
            "--auth",
            "Bearer token-abc",
            "--api-key",
            "key-one",
            "-H",
            "X-Custom: yes",
            "--history-file",
            &history_arg,
        ],
        false,
    );
    let (id, headers) = backend.next_connection(&mut events);
    let has = |name: &str, value: &str| headers.iter().any(|(n, v)| n == name && v == value);
    assert!(has("authorization", "Bearer token-abc"), "{headers:?}");
    assert!(has("x-api-key", "key-one"), "{headers:?}");
    assert!(has("x-custom", "yes"), "{headers:?}");

    pty.wait_connected();
    pty.type_line(r#"/send send "Hello World!""#);
    pty.expect(r#"> {"action":"send","body":"Hello World!"}"#);
    pty.expect(r#"< "Hello World!""#);
    pty.expect("✓ echo");
    assert_eq!(pty.quit_at_prompt(), 0);
    let code = backend.block_on(support::disconnect_code(&mut events, &id));
    assert_eq!(code, 1000);
    let saved = std::fs::read_to_string(&history).expect("the history file was written");
    assert!(saved.contains(r#"/send send "Hello World!""#), "{saved}");
}

/// A server cannot drive the terminal: its text frame and close reason reach the pty with
/// their control characters escaped visibly. Before, they were printed raw (setting the
/// window title, clearing the screen, writing the clipboard, asking for the cursor).
#[test]
fn escape_sequences_from_the_server_are_shown_escaped() {
    let backend = Backend::sample();
    let url = backend.block_on(support::spawn_hostile_server());
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[&url, "-P"], false);
    pty.wait_connected();
    pty.type_line("hello");
    pty.expect(r"< \x1b]0;pwned\x07\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07evil\u{202e}txt");
    let closed = pty.expect(r"connection closed by the server: 4000 bye\x1b[6n");
    let rest = pty.rest();
    let everything = closed + &rest;
    for raw in ["\x1b]0;", "\x1b]52;", "\u{202e}", "bye\x1b[6n"] {
        assert!(
            !everything.contains(raw),
            "{raw:?} reached the terminal raw"
        );
    }
    assert!(
        everything.contains(r"< close 4000 bye\x1b[6n"),
        "{everything}"
    );
}

/// In pipe mode, messages written to a stdout that is not a terminal are data: raw. The
/// close reason, on stderr, is escaped.
#[test]
fn pipe_mode_passes_messages_raw_to_a_pipe_and_escapes_the_rest() {
    let backend = Backend::sample();
    let url = backend.block_on(support::spawn_hostile_server());
    let home = temp_home();
    let run = run(wsprobe(home.path())
        .args(["connect", &url])
        .write_stdin("hello\n"));
    assert!(
        run.stdout.contains(support::HOSTILE_TEXT),
        "{:?}",
        run.stdout
    );
    run.assert_stderr_has(r"4000 bye\x1b[6n");
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
}

/// Piped input to a server that stopped reading: the first send that cannot complete
/// within the limit ends the session (exit 1). Before, each remaining line waited out the
/// limit again (5 s a line: minutes here).
#[test]
fn piped_input_to_a_server_that_stopped_reading_ends_after_the_first_stalled_send() {
    use std::io::Write as _;
    let backend = Backend::sample();
    let (url, _first_messages) = backend.block_on(support::spawn_deaf_server());
    let home = temp_home();
    let started = Instant::now();
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(["connect", &url, "-w", "0"])
        .env("NO_COLOR", "1")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running wsprobe");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        // 200 lines of 100 KB: far more than the socket buffers hold. Writing stops when
        // wsprobe leaves (a broken pipe).
        let line = format!("{}\n", "x".repeat(100_000));
        for _ in 0..200 {
            if stdin.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    let output = child.wait_with_output().expect("waiting for wsprobe");
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the server is not reading"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it ended after the first stalled send: {:?}",
        started.elapsed()
    );
}

/// The success line and a usage error show URLs without their secrets (before, the
/// success line showed `?token=…&X-Amz-Signature=…` and an invalid URL its password).
#[test]
fn urls_are_shown_without_their_secrets() {
    let backend = Backend::sample();
    let home = temp_home();
    let url = format!(
        "{}?token=SEKRIT1&X-Amz-Signature=SEKRIT2&room=7",
        backend.url()
    );
    let run1 = run(wsprobe(home.path()).args(["connect", &url, "-x", "hi", "-w", "0"]));
    run1.assert_stderr_has("connected to ");
    run1.assert_stderr_has("token=<redacted>&X-Amz-Signature=<redacted>&room=7");
    assert!(!run1.stderr.contains("SEKRIT"), "{}", run1.stderr);

    let run2 = run(wsprobe(home.path()).args(["connect", "htp://user:SEKRIT@h/dev"]));
    assert_eq!(run2.code, Some(2), "{}", run2.stderr);
    run2.assert_stderr_has("user:<redacted>@h/dev");
    assert!(!run2.stderr.contains("SEKRIT"), "{}", run2.stderr);
}

#[test]
fn a_line_being_typed_survives_a_message_arriving() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    let (id, _) = backend.next_connection(&mut events);
    pty.wait_connected();
    pty.session.send(r#"/send send "typed"#).expect("typing");
    // Wait until the editor has echoed what was typed, then make a message arrive.
    pty.expect("typed");
    backend.push(&id, "pushed meanwhile");
    pty.expect("< pushed meanwhile");
    pty.session.send(" line\"\r").expect("typing the rest");
    pty.expect(r#"< "typed line""#);
    pty.expect("✓ echo");
    pty.type_line("/quit");
    assert_eq!(pty.exit_code(), 0);
}

#[test]
fn a_mismatching_echo_is_reported_with_expected_and_actual() {
    let backend = Backend::sample();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(
        home.path(),
        &[&url, "--echo", "full", "--echo-timeout", "300ms"],
        false,
    );
    pty.wait_connected();
    pty.type_line("/send send x");
    pty.expect("✗ echo mismatch");
    pty.expect(r#"expected: {"action":"send","body":"x"}"#);
    pty.expect(r#"actual:   "x""#);
    // A message no route takes gets API Gateway's error frame, shown as an error.
    pty.type_line("not routed");
    pty.expect("< gateway error: Forbidden (connectionId ");
    pty.expect(", requestId ");
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn ctrl_c_clears_the_line_and_tab_completes_commands() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    backend.next_connection(&mut events);
    pty.wait_connected();
    pty.session.send("never sent").expect("typing");
    pty.expect("never sent");
    pty.control(ControlCode::EndOfText);
    // A fresh prompt (what was typed after Ctrl-C in the same burst is dropped, as in
    // a shell).
    pty.wait_prompt();
    // Completion: `/se` + Tab becomes `/send `.
    pty.session.send("/se\t").expect("typing");
    pty.session.send("send \"tab\"\r").expect("typing");
    pty.expect(r#"< "tab""#);
    pty.expect("✓ echo");
    // The cleared line never reached the server: the first message it saw is the send.
    let route = backend.block_on(support::wait_event(&mut events, |event| match event {
        ServeEvent::Message { route_key, .. } => Some(route_key.clone()),
        _ => None,
    }));
    assert_eq!(route.as_deref(), Some("send"));
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn lines_typed_before_the_handshake_completes_are_sent_after_it() {
    let backend = Backend::sample();
    let mut server = scripted(&backend, Part::Echo, true);
    let home = temp_home();
    let url = server.url.clone();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    pty.wait_prompt();
    pty.type_line("early bird");
    pty.expect("early bird");
    let _ = server.release.take().map(|release| release.send(()));
    pty.expect("connected to");
    pty.expect("< early bird");
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn the_server_closing_at_the_prompt_is_shown_and_sets_the_exit_code() {
    let backend = Backend::sample();
    let server = scripted(&backend, Part::CloseWith(4001), false);
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[&server.url], false);
    pty.wait_connected();
    pty.type_line("please close");
    pty.expect("connection closed by the server: 4001 scripted");
    assert_eq!(pty.exit_code(), 1);
}

#[test]
fn without_a_url_the_prompt_talks_to_the_bundled_backend() {
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[], false);
    pty.expect("started the bundled backend at ws://127.0.0.1:");
    pty.wait_connected();
    pty.type_line(r#"/send send "Hello World!""#);
    pty.expect(r#"< "Hello World!""#);
    pty.expect("✓ echo");
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn colour_is_on_at_a_terminal_without_no_color() {
    let backend = Backend::sample();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], true);
    pty.wait_connected();
    pty.type_line("/send send hi");
    // Sent in cyan, the echo check in green.
    pty.expect("\x1b[36m> {\"action\":\"send\",\"body\":\"hi\"}");
    pty.expect("\x1b[32m✓ echo");
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn whoami_capture_and_post_to_myself_at_the_prompt() {
    // The bundled backend has the whoami route.
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[], false);
    pty.wait_connected();
    pty.type_line("/send whoami");
    pty.expect(r#"< {"connectionId":""#);
    pty.type_line("/capture me = json $.connectionId");
    pty.expect("✓ capture ${me} = ");
    pty.type_line("/post ${me} hello from myself");
    // The pushed message and the answer of the call race; the status is checked after.
    pty.expect("< hello from myself");
    pty.type_line("/expect status 200");
    pty.expect("✓ expect status 200");
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn sigterm_at_the_prompt_gives_the_terminal_back_and_closes_with_1001() {
    use expectrl::process::unix::Signal;
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    pty.wait_connected();
    let (id, _) = backend.next_connection(&mut events);
    assert!(
        !pty.canonical(),
        "the editor should have the terminal in raw mode"
    );
    pty.session
        .get_process_mut()
        .kill(Signal::SIGTERM)
        .expect("sending SIGTERM");
    assert_eq!(pty.exit_code(), 130);
    assert!(pty.canonical(), "the terminal was not given back");
    assert_eq!(
        backend.block_on(support::disconnect_code(&mut events, &id)),
        1001
    );
}

#[test]
fn ctrl_c_cancels_a_running_expect_and_loses_nothing() {
    let backend = Backend::sample();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    pty.wait_connected();
    pty.type_line(r#"/expect json "never" within 30s"#);
    // The editor's next prompt: from then on Ctrl-C is a key, not SIGINT.
    pty.expect("within 30s");
    pty.wait_prompt();
    pty.control(ControlCode::EndOfText);
    pty.expect("expect cancelled");
    pty.type_line(r#"/send send "after""#);
    pty.expect("✓ echo");
    pty.type_line(r#"/expect json "after""#);
    pty.expect(r#"✓ expect json "after""#);
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn the_last_line_ends_with_a_newline_after_ctrl_d() {
    let backend = Backend::sample();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    pty.wait_connected();
    pty.control(ControlCode::EndOfTransmission);
    pty.expect("connection closed: 1000");
    // Else the shell's prompt is glued to it.
    let rest = pty.rest();
    assert!(
        rest.starts_with('\n') || rest.starts_with("\r\n"),
        "{rest:?}"
    );
    assert_eq!(pty.exit_code(), 0);
}

#[test]
fn verdicts_ready_at_once_are_printed_on_their_own_line() {
    // The bundled backend has the whoami route.
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[], false);
    pty.wait_connected();
    pty.type_line("/send whoami");
    pty.expect(r#"< {"connectionId":""#);
    pty.type_line("/capture me = json $.connectionId");
    pty.expect("✓ capture ${me} = ");
    pty.type_line("/get ${me}");
    pty.expect("← 200 OK");
    // A verdict that is ready at once is printed while the editor is between two lines;
    // it must still end its line, or the next prompt is drawn over it.
    const VERDICT: &str = "✓ expect status 200";
    const TIMES: usize = 20;
    let mut output = String::new();
    for _ in 0..TIMES {
        pty.type_line("/expect status 200");
        output.push_str(&pty.expect(VERDICT));
        output.push_str(VERDICT);
    }
    pty.type_line("/quit");
    output.push_str(&pty.rest());
    let own_line = output
        .match_indices(VERDICT)
        .filter(|(at, _)| {
            let after = &output[at + VERDICT.len()..];
            after.starts_with('\n') || after.starts_with("\r\n")
        })
        .count();
    assert_eq!(own_line, TIMES, "{output:?}");
}

// ---------------------------------------------------------------------------------------
// Piped stdin and -x

#[test]
fn a_raw_text_echo_passes_the_echo_check_and_expect_echo_alike() {
    let backend = Backend::sample();
    let server = scripted(&backend, Part::RawBody, false);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &server.url,
        "-w",
        "0",
        "-x",
        "/send send Hello",
        "-x",
        "/expect echo within 1s",
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert_eq!(result.stdout, "Hello\n");
    result.assert_stderr_has("✓ echo ");
    result.assert_stderr_has(r#"✓ expect echo "Hello""#);
    assert!(!result.stderr.contains('✗'), "{}", result.stderr);
}

#[test]
fn a_send_keeps_earlier_messages_in_the_inbox() {
    let backend = Backend::sample();
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-w",
        "0",
        "-x",
        r#"/send send "A""#,
        "-x",
        "/wait 200ms",
        "-x",
        "/text hi",
        "-x",
        r#"/expect json "A" within 2s"#,
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    result.assert_stderr_has(r#"✓ expect json "A" (already received)"#);
}

#[test]
fn waiting_for_a_missing_echo_costs_no_cpu() {
    let backend = Backend::sample();
    let server = scripted(&backend, Part::Silent, false);
    let home = temp_home();
    // bash's `times` prints the CPU time of the shell's children once they have exited:
    // `0m0.010s 0m0.004s` (user, system) on its second line.
    let output = StdCommand::new("bash")
        .arg("-c")
        .arg(r#""$0" "$@" >/dev/null 2>&1; times"#)
        .arg(env!("CARGO_BIN_EXE_wsprobe"))
        .args([
            "connect",
            &server.url,
            "--echo-timeout",
            "3s",
            "-w",
            "0",
            "-x",
            r#"/send send "x""#,
        ])
        .env("NO_COLOR", "1")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .output()
        .expect("running bash");
    let times = String::from_utf8_lossy(&output.stdout);
    let children = times.lines().nth(1).unwrap_or_else(|| panic!("{times:?}"));
    let seconds: f64 = children
        .split_whitespace()
        .map(|field| {
            let (minutes, rest) = field.split_once('m').unwrap_or_else(|| panic!("{times:?}"));
            let minutes: f64 = minutes.parse().unwrap_or_else(|_| panic!("{times:?}"));
            let seconds: f64 = rest
                .trim_end_matches('s')
                .parse()
                .unwrap_or_else(|_| panic!("{times:?}"));
            minutes * 60.0 + seconds
        })
        .sum();
    // Waiting 3 s for an echo that never comes: start-up and a few wake-ups, not a core.
    assert!(seconds < 0.5, "{seconds} s of CPU: {times:?}");
}

#[test]
fn piped_lines_are_sent_and_messages_come_out_one_per_line() {
    let backend = Backend::sample();
    let home = temp_home();
    let result = run(wsprobe(home.path())
        .args(["connect", &backend.url(), "-w", "0"])
        .write_stdin("/send send \"Hello World!\"\n/send send {\"body\": [1, 2]}\n\n"));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert_eq!(result.stdout, "\"Hello World!\"\n[1,2]\n");
    assert_eq!(
        result.stderr.matches("✓ echo").count(),
        2,
        "{}",
        result.stderr
    );
}

#[test]
fn a_plain_line_is_a_text_frame_and_a_double_slash_escapes() {
    let backend = Backend::start(ServeConfig {
        default_route: Some(wsprobe_serve::RouteBehaviour::Echo),
        ..ServeConfig::default()
    });
    let home = temp_home();
    let result = run(wsprobe(home.path())
        .args(["connect", &backend.url(), "-w", "0"])
        .args([
            "-x",
            "plain text",
            "-x",
            "//not a command",
            "-x",
            "/text /raw",
        ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    // The bundled $default echo sends frames back unchanged, in order.
    let lines: Vec<&str> = result.stdout.lines().collect();
    assert_eq!(
        lines,
        ["plain text", "/not a command", "/raw"],
        "{}",
        result.stderr
    );
}

#[test]
fn execute_runs_commands_in_order_and_expectations_count() {
    let backend = Backend::sample();
    let home = temp_home();
    let url = backend.url();
    let passing = run(wsprobe(home.path()).args([
        "connect",
        &url,
        "-w",
        "0",
        "-x",
        r#"/send send "one""#,
        "-x",
        r#"/expect json "one" within 2s"#,
        "-x",
        "/ping abc",
        "-x",
        "/expect pong abc within 2s",
    ]));
    assert_eq!(passing.code, Some(0), "{}", passing.stderr);
    passing.assert_stderr_has("✓ expect");

    let failing = run(wsprobe(home.path()).args([
        "connect",
        &url,
        "-w",
        "0",
        "-x",
        r#"/send send "one""#,
        "-x",
        r#"/expect json "two" within 300ms"#,
    ]));
    assert_eq!(failing.code, Some(1), "{}", failing.stderr);
    failing.assert_stderr_has(r#"✗ expect json "two""#);
    failing.assert_stderr_has(r#"received: text "one""#);
}

#[test]
fn a_failed_echo_check_exits_1() {
    let backend = Backend::sample();
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "--echo",
        "full",
        "--echo-timeout",
        "300ms",
        "-w",
        "0",
        "-x",
        "/send send x",
    ]));
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    result.assert_stderr_has("✗ echo mismatch");
    assert_eq!(result.stdout, "\"x\"\n");
}

#[test]
fn silence_is_a_timed_out_echo_check() {
    let backend = Backend::sample();
    let server = scripted(&backend, Part::Silent, false);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &server.url,
        "--echo-timeout",
        "200ms",
        "-w",
        "0",
        "-x",
        "/send send x",
    ]));
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    result.assert_stderr_has("✗ no echo within 200ms");
}

#[test]
fn an_abnormal_close_exits_1_with_the_code_shown() {
    let backend = Backend::sample();
    let server = scripted(&backend, Part::CloseWith(1011), false);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args(["connect", &server.url, "-x", "boom", "-w", "5s"]));
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    result.assert_stderr_has("connection closed by the server: 1011 scripted");
}

#[test]
fn a_refused_handshake_shows_status_and_body_and_exits_3() {
    let backend = Backend::start(ServeConfig {
        tokens: vec![Secret::new("token-abc")],
        ..ServeConfig::default()
    });
    let home = temp_home();
    let result = run(wsprobe(home.path()).args(["connect", &backend.url(), "-x", "hi"]));
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    result.assert_stderr_has("401");
    result.assert_stderr_has(r#"{"message":"Unauthorized"}"#);
    // A wrong token is refused the same way, and never printed.
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "--auth",
        "Bearer wrong-token",
        "-x",
        "hi",
    ]));
    assert_eq!(result.code, Some(3));
    assert!(!result.stderr.contains("wrong-token"), "{}", result.stderr);
}

#[test]
fn failing_to_connect_exits_3_with_its_own_message() {
    let home = temp_home();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let refused = run(wsprobe(home.path()).args([
        "connect",
        &format!("ws://127.0.0.1:{port}/dev"),
        "-x",
        "hi",
    ]));
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    refused.assert_stderr_has("refused");

    let dns = run(wsprobe(home.path()).args(["connect", "ws://nowhere.invalid/dev", "-x", "hi"]));
    assert_eq!(dns.code, Some(3), "{}", dns.stderr);
    dns.assert_stderr_has("could not resolve host `nowhere.invalid`");
}

#[test]
fn a_handshake_that_never_completes_times_out_with_exit_3() {
    let backend = Backend::sample();
    let server = scripted(&backend, Part::Echo, true);
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &server.url,
        "--connect-timeout",
        "300ms",
        "-x",
        "hi",
    ]));
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    result.assert_stderr_has("timed out after 300ms connecting to");
}

#[test]
fn usage_errors_exit_2_before_connecting() {
    let home = temp_home();
    let no_scheme = run(wsprobe(home.path()).args(["connect", "127.0.0.1:9/dev", "-x", "hi"]));
    assert_eq!(no_scheme.code, Some(2), "{}", no_scheme.stderr);
    no_scheme.assert_stderr_has("ws://127.0.0.1:9/dev");
    let syntax =
        run(wsprobe(home.path()).args(["connect", "ws://127.0.0.1:9/dev", "-x", "/sned x"]));
    assert_eq!(syntax.code, Some(2), "{}", syntax.stderr);
    syntax.assert_stderr_has("^");
}

#[test]
fn without_a_url_the_bundled_backend_answers() {
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        "-w",
        "0",
        "-x",
        r#"/send send "Hello World!""#,
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    result.assert_stderr_has("started the bundled backend at ws://127.0.0.1:");
    assert_eq!(result.stdout, "\"Hello World!\"\n");
    result.assert_stderr_has("✓ echo");
}

#[test]
fn ctrl_c_outside_the_prompt_exits_130() {
    stopped_by_a_signal_exits_130("-INT");
}

#[test]
fn sigterm_outside_the_prompt_exits_130() {
    stopped_by_a_signal_exits_130("-TERM");
}

/// `kill SIGNAL` during a `-x` wait closes with 1001 and exits 130.
fn stopped_by_a_signal_exits_130(signal: &str) {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(["connect", &backend.url(), "-x", "/wait 1m"])
        .env("NO_COLOR", "1")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running wsprobe");
    // stderr is read on a thread: its lines say when the client has seen the handshake
    // complete (the server's event comes earlier, while the client may still be reading
    // the 101 answer, and a signal then ends the attempt without a close frame).
    let stderr_lines = support::line_channel(child.stderr.take().expect("stderr is piped"));
    let mut stderr = support::read_until(&stderr_lines, "connected to");
    let deadline = Instant::now() + TIMEOUT;
    let (id, _) = backend.next_connection(&mut events);
    let status = StdCommand::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "wsprobe did not stop on {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stderr.extend(stderr_lines.try_iter().map(|line| format!("{line}\n")));
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(
        backend.block_on(support::disconnect_code(&mut events, &id)),
        1001,
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Captures and the @connections API, as in scripts

#[test]
fn a_capture_fills_later_lines_before_the_environment() {
    let backend = Backend::sample();
    let home = temp_home();
    let result = run(wsprobe(home.path())
        .env("id", "from-the-environment")
        .env("GREETING", "hi")
        .args(["connect", &backend.url(), "-w", "0"])
        .args([
            "-x",
            r#"/send send "${id}""#,
            "-x",
            r#"/send send {"body": {"id": "c-7"}}"#,
            "-x",
            "/capture id = json $.id within 2s",
            "-x",
            r#"/send send "${id} ${GREETING}""#,
            "-x",
            r#"/expect json "c-7 hi" within 2s"#,
        ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert_eq!(
        result.stdout, "\"from-the-environment\"\n{\"id\":\"c-7\"}\n\"c-7 hi\"\n",
        "{}",
        result.stderr
    );
    result.assert_stderr_has("✓ capture ${id} = c-7");
}

#[test]
fn a_capture_that_finds_nothing_fails_and_an_undefined_variable_is_reported() {
    let backend = Backend::sample();
    let home = temp_home();
    let result = run(wsprobe(home.path())
        .env_remove("nope")
        .args(["connect", &backend.url(), "-w", "0"])
        .args([
            "-x",
            r#"/send send "no id here""#,
            "-x",
            "/capture id = json $.id within 300ms",
            "-x",
            "/send send ${nope}",
        ]));
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    result.assert_stderr_has("✗ capture id = json $.id: nothing matched within 300ms");
    result.assert_stderr_has(r#"received: text "no id here""#);
    result.assert_stderr_has("nope");
    // The line with the undefined variable was not sent.
    assert_eq!(result.stdout, "\"no id here\"\n", "{}", result.stderr);
}

#[test]
fn post_to_my_own_id_arrives_on_stdout() {
    let backend = Backend::with_whoami();
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-w",
        "0",
        "-x",
        "/send whoami",
        "-x",
        "/capture me = json $.connectionId",
        "-x",
        "/post ${me} pushed to myself",
        "-x",
        "/expect status 200",
        "-x",
        "/expect text \"pushed to myself\" within 2s",
        "-x",
        r#"/post ${me} {"push": 1}"#,
        "-x",
        "/expect json $.push == 1 within 2s",
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let lines: Vec<&str> = result.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", result.stdout);
    assert!(lines[0].starts_with(r#"{"connectionId":""#), "{}", lines[0]);
    assert_eq!(lines[1..], ["pushed to myself", r#"{"push":1}"#]);
    assert_eq!(
        result.stderr.matches("← 200 OK").count(),
        2,
        "{}",
        result.stderr
    );
    result.assert_stderr_has("> POST http://127.0.0.1:");
}

#[test]
fn delete_of_my_own_id_closes_with_1000() {
    let backend = Backend::with_whoami();
    let mut events = backend.events();
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-w",
        "5s",
        "-x",
        "/send whoami",
        "-x",
        "/capture me = json $.connectionId",
        "-x",
        "/delete ${me}",
    ]));
    let (id, _) = backend.next_connection(&mut events);
    assert_eq!(
        backend.block_on(support::disconnect_code(&mut events, &id)),
        1000
    );
    // 1000 is a normal close: not a failure, and it ends the session before -w is up.
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    result.assert_stderr_has("connection closed by the server: 1000");
    result.assert_stderr_has("← 204 No Content");
}

#[test]
fn get_prints_the_connection_as_json() {
    let backend = Backend::with_whoami();
    let home = temp_home();
    let result = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-w",
        "0",
        "-x",
        "/send whoami",
        "-x",
        "/capture me = json $.connectionId",
        "-x",
        "/get ${me}",
        "-x",
        "/expect status 200",
        "-x",
        r#"/expect response json $.identity.sourceIp == "127.0.0.1""#,
        "-x",
        "/expect response json $.connectedAt exists",
    ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let answer = result
        .stderr
        .lines()
        .skip_while(|line| !line.starts_with("← 200 OK"))
        .nth(1)
        .unwrap_or_else(|| panic!("no answer in {}", result.stderr));
    let json: serde_json::Value = serde_json::from_str(answer).expect("the body is JSON");
    assert_eq!(json["identity"]["sourceIp"], "127.0.0.1");
    // stdout carries only received messages: the whoami answer.
    assert_eq!(result.stdout.lines().count(), 1, "{}", result.stdout);
}

#[test]
fn post_to_a_closed_connection_is_410_gone() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let closed_id = backend.block_on(async {
        let (mut ws, id) = support::connect_and_id(backend.server()).await;
        ws.close(None).await.expect("closing");
        support::disconnect_code(&mut events, &id).await;
        id
    });
    let home = temp_home();
    let post = format!("/post {closed_id} anyone there?");
    let passing = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-w",
        "0",
        "-x",
        &post,
        "-x",
        "/expect status 410",
        "-x",
        r#"/expect response json $.message == "Gone""#,
    ]));
    assert_eq!(passing.code, Some(0), "{}", passing.stderr);
    passing.assert_stderr_has("← 410 Gone GoneException");
    passing.assert_stderr_has("✓ expect status 410");

    let failing = run(wsprobe(home.path()).args([
        "connect",
        &backend.url(),
        "-w",
        "0",
        "-x",
        "/expect status 200",
        "-x",
        &post,
        "-x",
        "/expect status 200",
    ]));
    assert_eq!(failing.code, Some(1), "{}", failing.stderr);
    failing.assert_stderr_has(
        "✗ expect status 200: no `post`, `get` or `delete` before this line to check",
    );
    failing.assert_stderr_has(r#"✗ expect status 200: the status is 410"#);
}

#[test]
fn calls_at_the_prompt_are_signed_like_the_handshake() {
    const ACCESS_KEY: &str = "AKIDWSPROBEREPL";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+replEXAMPLEKEY";
    let mut config = ServeConfig {
        iam_keys: vec![
            wsprobe_core::aws::IamKey::parse(&format!("{ACCESS_KEY}:{SECRET}")).expect("a key"),
        ],
        ..ServeConfig::default()
    };
    config
        .routes
        .insert("whoami", wsprobe_serve::RouteBehaviour::Whoami);
    let backend = Backend::start(config);
    let home = temp_home();
    let mut command = wsprobe(home.path());
    for name in ["AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SESSION_TOKEN"] {
        command.env_remove(name);
    }
    let result = run(command
        .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .args(["connect", &backend.url(), "--sigv4", "-w", "0"])
        .args([
            "-x",
            "/send whoami",
            "-x",
            "/capture me = json $.connectionId",
            "-x",
            "/post ${me} signed push",
            "-x",
            "/expect status 200",
            "-x",
            "/expect text \"signed push\" within 2s",
        ]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert!(
        result.stdout.ends_with("signed push\n"),
        "{}",
        result.stdout
    );
    for output in [&result.stdout, &result.stderr] {
        assert!(!output.contains(SECRET), "{output}");
    }
}

#[test]
fn a_self_signed_server_is_refused_with_a_reason_then_trusted_with_cacert_or_k_and_ws_gets_a_hint()
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (server, certificate) = runtime.block_on(support::spawn_tls_server(ServeConfig::default()));
    let url = server.ws_url();
    assert!(url.starts_with("wss://"), "{url}");
    let home = temp_home();
    let (cert_path, _key_path) = certificate.write_to(home.path());
    let send = ["-x", "/send send \"over TLS\"", "-w", "0"];

    let untrusted = run(wsprobe(home.path()).args(["connect", &url]).args(send));
    assert_eq!(untrusted.code, Some(3), "{}", untrusted.stderr);
    untrusted.assert_stderr_has("TLS");
    assert!(
        untrusted.stderr.contains("self-signed") || untrusted.stderr.contains("issuer"),
        "the reason is named: {}",
        untrusted.stderr
    );

    let plain = url.replacen("wss://", "ws://", 1);
    let not_tls = run(wsprobe(home.path()).args(["connect", &plain]).args(send));
    assert_eq!(not_tls.code, Some(3), "{}", not_tls.stderr);
    not_tls.assert_stderr_has("try wss://");

    let trusted = run(wsprobe(home.path())
        .args(["connect", &url, "--cacert"])
        .arg(&cert_path)
        .args(send));
    assert_eq!(trusted.code, Some(0), "{}", trusted.stderr);
    assert_eq!(trusted.stdout.trim(), "\"over TLS\"");

    let insecure = run(wsprobe(home.path())
        .args(["connect", &url, "-k"])
        .args(send));
    assert_eq!(insecure.code, Some(0), "{}", insecure.stderr);
    assert_eq!(insecure.stdout.trim(), "\"over TLS\"");
    assert!(
        insecure.stderr.to_lowercase().contains("warning"),
        "-k warns: {}",
        insecure.stderr
    );
    runtime.block_on(server.shutdown());
}

#[test]
fn an_unreachable_proxy_is_named_as_the_problem() {
    let home = temp_home();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let proxy = format!("http://127.0.0.1:{closed_port}");
    let result = run(wsprobe(home.path()).args([
        "connect",
        "ws://server.invalid/dev",
        "--proxy",
        &proxy,
        "-x",
        "hi",
    ]));
    assert_eq!(result.code, Some(3), "{}", result.stderr);
    result.assert_stderr_has(&format!(
        "proxy 127.0.0.1:{closed_port} failed: cannot reach it"
    ));
    result.assert_stderr_has("--no-proxy");
}

// ---------------------------------------------------------------------------------------
// wscat's spellings (issue 14)

#[test]
fn wscat_dash_c_works_before_and_after_connect_with_every_connect_option() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    for prefix in [&[][..], &["connect"][..]] {
        let result = run(wsprobe(home.path())
            .args(prefix)
            .args(["-c", &url, "-H", "X-Trace: on", "-w", "0"])
            .args(["-x", r#"/send send "hi""#]));
        assert_eq!(result.code, Some(0), "{prefix:?}: {}", result.stderr);
        assert_eq!(result.stdout, "\"hi\"\n", "{prefix:?}");
        let (_, headers) = backend.next_connection(&mut events);
        assert!(
            headers.iter().any(|(n, v)| n == "x-trace" && v == "on"),
            "{headers:?}"
        );
    }
    let both = run(wsprobe(home.path()).args(["connect", &url, "-c", &url]));
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    both.assert_stderr_has("cannot be used with");
}

#[test]
fn wscat_wait_takes_bare_seconds_and_minus_one_stays_until_the_server_closes() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    let seconds = run(wsprobe(home.path())
        .args(["-c", &url, "-w", "0.1"])
        .args(["-x", r#"/send send "a""#]));
    assert_eq!(seconds.code, Some(0), "{}", seconds.stderr);
    assert_eq!(seconds.stdout, "\"a\"\n");
    let _ = backend.next_connection(&mut events);

    let bad = run(wsprobe(home.path()).args(["-c", &url, "-w", "-2"]));
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    bad.assert_stderr_has("-1 to stay connected");

    // `-w -1`: after the commands, still connected: a message posted later arrives, and
    // the process ends only when the server closes the connection.
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(["-c", &url, "-w", "-1", "-x", r#"/send send "first""#])
        .env("NO_COLOR", "1")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning wsprobe");
    let (id, _) = backend.next_connection(&mut events);
    let lines_rx = support::line_channel(child.stdout.take().expect("piped stdout"));
    let next_line = || lines_rx.recv_timeout(TIMEOUT).expect("a line on stdout");
    assert_eq!(next_line(), "\"first\"");
    backend.push(&id, "later");
    assert_eq!(next_line(), "later");
    let server = backend.server();
    let path = support::connection_path(server, &id);
    let deleted = backend.block_on(support::http(server.addr(), "DELETE", &path, &[], b""));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let status = child.wait().expect("wsprobe exits");
    assert!(status.code().is_some(), "{status:?}");
}

#[test]
fn wscat_no_check_slash_show_ping_pong_and_pong_are_accepted() {
    let backend = Backend::sample();
    let home = temp_home();
    let result = run(wsprobe(home.path())
        .args(["-c", &backend.url(), "-n", "--slash", "--show-ping-pong"])
        .args(["-w", "0", "-x", "/pong beat", "-x", "/ping x"])
        .args(["-x", "/expect pong x within 2s"]));
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    result.assert_stderr_has("✓ expect pong");
    result.assert_stderr_has("-k/--insecure");
}

#[test]
fn wscat_auth_user_pass_is_sent_as_basic_with_one_note_and_a_scheme_as_is() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    let basic = run(wsprobe(home.path())
        .args(["-c", &url, "--auth", "alice:s3cret", "-w", "0"])
        .args(["-x", r#"/send send "x""#]));
    assert_eq!(basic.code, Some(0), "{}", basic.stderr);
    let note = "note: --auth alice:… is taken as wscat's USER:PASS and sent as \
                `Authorization: Basic …` (a value with a scheme, e.g. 'Bearer TOKEN', is sent as is)\n";
    assert_eq!(basic.stderr.matches(note).count(), 1, "{}", basic.stderr);
    assert!(!basic.stderr.contains("s3cret"), "{}", basic.stderr);
    let (_, headers) = backend.next_connection(&mut events);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "Basic YWxpY2U6czNjcmV0"),
        "{headers:?}"
    );

    let bearer = run(wsprobe(home.path())
        .args(["-c", &url, "--auth", "Bearer a:b", "-w", "0"])
        .args(["-x", r#"/send send "x""#]));
    assert_eq!(bearer.code, Some(0), "{}", bearer.stderr);
    assert!(!bearer.stderr.contains("note:"), "{}", bearer.stderr);
    let (_, headers) = backend.next_connection(&mut events);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "Bearer a:b"),
        "{headers:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Errors that name the fix (issue 14)

#[test]
fn a_mistyped_scheme_suggests_the_url_meant() {
    let home = temp_home();
    let result = run(wsprobe(home.path()).args(["connect", "ws//127.0.0.1:9/dev", "-x", "hi"]));
    assert_eq!(result.code, Some(2), "{}", result.stderr);
    assert_eq!(
        result.stderr,
        "error: invalid URL `ws//127.0.0.1:9/dev`: the scheme is mistyped; did you mean \
         ws://127.0.0.1:9/dev?\n"
    );
}

#[test]
fn hints_after_401_and_403_know_which_credentials_were_given() {
    let backend = Backend::start(ServeConfig {
        tokens: vec![Secret::new("token-abc")],
        api_keys: vec![Secret::new("key-one")],
        ..ServeConfig::default()
    });
    let home = temp_home();
    let url = backend.url();
    let hint_of = |result: &Run| {
        assert_eq!(result.code, Some(3), "{}", result.stderr);
        result
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("hint: "))
            .unwrap_or_else(|| panic!("no hint: {}", result.stderr))
            .to_owned()
    };
    // Nothing given: the key is missing first (403), and the hint says to pass one.
    let bare = run(wsprobe(home.path()).args(["connect", &url, "-x", "hi"]));
    assert_eq!(
        hint_of(&bare),
        "check the API key (--api-key or WSPROBE_API_KEY) and the stage in the URL; \
         an IAM-protected stage wants a signed request (--sigv4)"
    );
    // The right key and a wrong token: 401, and the hint does not say "pass --auth".
    let wrong_token = run(wsprobe(home.path()).args([
        "connect",
        &url,
        "--api-key",
        "key-one",
        "--auth",
        "Bearer wrong",
        "-x",
        "hi",
    ]));
    assert_eq!(
        hint_of(&wrong_token),
        "the Authorization value was refused: check that the token is valid and not expired, \
         that it is for this stage, and what the authorizer expects"
    );
    // A wrong key: 403, and the hint does not say "pass --api-key".
    let wrong_key =
        run(wsprobe(home.path()).args(["connect", &url, "--api-key", "nope", "-x", "hi"]));
    assert_eq!(
        hint_of(&wrong_key),
        "the API key was refused: check that the key is in the stage's usage plan, and the \
         stage in the URL; an IAM-protected stage wants a signed request (--sigv4)"
    );
}

#[test]
fn load_without_a_url_names_stage() {
    let home = temp_home();
    let result = run(wsprobe(home.path()).args(["load", "-c", "1"]));
    assert_eq!(result.code, Some(2), "{}", result.stderr);
    assert_eq!(
        result.stderr,
        "error: load needs the stage to ping: `wsprobe load URL …`, or `wsprobe load --stage \
         NAME …` with the URL from wsprobe.toml\n"
    );
}

// ---------------------------------------------------------------------------------------
// The prompt guides a newcomer (issue 14)

#[test]
fn the_prompt_says_how_to_get_help_and_leave_and_a_second_ctrl_c_quits() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let url = backend.url();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    pty.expect("/help for commands, Ctrl-D to quit");
    backend.next_connection(&mut events);
    pty.wait_connected();

    // A bare `help` is still sent as typed, and the note asks once.
    pty.type_line("help");
    pty.expect(
        "`help` was sent as a text frame, as typed; did you mean /help? (commands start with /)",
    );
    pty.type_line("quit");
    pty.type_line(r#"/send send "marker""#);
    let between = pty.expect(r#"< "marker""#);
    assert!(!between.contains("did you mean /quit"), "{between}");
    // The server saw both words (4 bytes each, no route), then the send.
    let seen: Vec<(Option<String>, usize)> = (0..3)
        .map(|_| {
            backend.block_on(support::wait_event(&mut events, |event| match event {
                ServeEvent::Message {
                    route_key, bytes, ..
                } => Some((route_key.clone(), *bytes)),
                _ => None,
            }))
        })
        .collect();
    assert_eq!(seen[..2], [(None, 4), (None, 4)], "{seen:?}");

    // Ctrl-C at an empty prompt says how to quit; a second one quits.
    pty.wait_prompt();
    pty.control(ControlCode::EndOfText);
    pty.expect("(to quit, press Ctrl-C again, Ctrl-D, or type /quit)");
    pty.wait_prompt();
    pty.control(ControlCode::EndOfText);
    assert_eq!(pty.exit_code(), 0);
}

#[test]
fn a_pasted_block_runs_line_by_line() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[&backend.url()], false);
    backend.next_connection(&mut events);
    pty.wait_connected();
    pty.session
        .send("\x1b[200~/send send \"one\"\n/send send \"two\"\n/send send \"three\"\x1b[201~\r")
        .expect("pasting");
    pty.expect(r#"< "one""#);
    pty.expect(r#"< "two""#);
    pty.expect(r#"< "three""#);
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn a_slow_handshake_has_a_status_line_and_lines_typed_during_a_wait_show_as_queued() {
    let backend = Backend::sample();
    let mut server = scripted(&backend, Part::Echo, true);
    let home = temp_home();
    let url = server.url.clone();
    let mut pty = Pty::spawn(home.path(), &[&url], false);
    pty.expect("connecting to ");
    let _ = server.release.take().map(|release| release.send(()));
    pty.wait_connected();
    pty.type_line("/wait 1m");
    pty.type_line("after the wait");
    pty.expect("queued: runs after /wait");
    // Ctrl-C cancels the wait; the queued line then runs.
    pty.wait_prompt();
    pty.control(ControlCode::EndOfText);
    pty.expect("cancelled");
    pty.expect("< after the wait");
    assert_eq!(pty.quit_at_prompt(), 0);
}

#[test]
fn tab_completes_arguments_at_the_prompt() {
    let backend = Backend::sample();
    let mut events = backend.events();
    let home = temp_home();
    let mut pty = Pty::spawn(home.path(), &[&backend.url()], false);
    backend.next_connection(&mut events);
    pty.wait_connected();
    // `/ec` + Tab + `f` + Tab: `/echo full `.
    pty.session.send("/ec\tf\t\r").expect("typing");
    pty.expect("echo full: the echo of /send is the whole message");
    assert_eq!(pty.quit_at_prompt(), 0);
}
