//! Conformance: one language, two front-ends. Every single-connection case of
//! `tests/cases` runs through `wsprobe run script.wsp` and through `wsprobe connect URL -x
//! /LINE …` (each line of the script as a prompt command) against the same server, and the
//! two must give the same verdict (the same exit code).
//!
//! A case is single-connection when its script has exactly one `connect`, no `@name`, and
//! no `expect connect-refused`; `test` lines are dropped (the prompt has no test blocks,
//! and every test of such a case runs on the one connection). The `connect`'s own options
//! become flags (`auth` → `--auth`, `api-key` → `--api-key`), `--var NAME=VALUE` becomes
//! an environment variable (the prompt's `${NAME}` reads captures, then the environment).
//! A case whose directory has a `server` file naming `raw-echo` runs against a server that
//! posts the body of a `send` back as is (an unquoted `Hello`) instead of `serve`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::run::{DEFAULT_ARGS, case_server, cases_dir};
use crate::support;

/// How a case runs at the prompt.
#[derive(Debug)]
struct PromptCase {
    /// Flags for `wsprobe connect` (besides the URL), from the case's arguments and the
    /// `connect`'s options.
    flags: BTreeMap<String, String>,
    /// Environment variables (the case's `--var`s).
    env: Vec<(String, String)>,
    /// The `-x` commands.
    commands: Vec<String>,
}

/// The prompt form of a case, or why it has none (more than one connection, …).
fn prompt_case(dir: &Path) -> Result<PromptCase, String> {
    let source = std::fs::read_to_string(dir.join("script.wsp")).map_err(|e| e.to_string())?;
    let source = source.strip_prefix('\u{feff}').unwrap_or(&source);
    let args: Vec<String> = match std::fs::read_to_string(dir.join("args")) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => DEFAULT_ARGS.iter().map(|a| (*a).to_owned()).collect(),
    };
    let mut flags = BTreeMap::new();
    let mut env = Vec::new();
    let mut given = args.iter();
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--url" => {
                given.next();
            }
            "--var" => {
                let value = given.next().ok_or("--var without a value")?;
                let (name, value) = value.split_once('=').ok_or("--var without =")?;
                env.push((name.to_owned(), value.to_owned()));
            }
            "--auth" | "--api-key" | "-H" | "--route-field" | "--body-field" | "--echo" => {
                let value = given.next().ok_or("a flag without a value")?;
                // `-H` may repeat; the cases give it at most twice, with different names.
                let key = if arg == "-H" {
                    format!("-H {}", value.split(':').next().unwrap_or_default())
                } else {
                    arg.clone()
                };
                flags.insert(key, value.clone());
            }
            other => return Err(format!("argument `{other}` has no prompt form")),
        }
    }
    let vars: BTreeMap<&str, &str> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let substitute = |text: &str| {
        let mut text = text.to_owned();
        for (name, value) in &vars {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        text
    };
    let mut connects = 0;
    // The indentation of the `connect` whose options may follow (deeper indented).
    let mut in_connect: Option<usize> = None;
    let mut commands = Vec::new();
    for line in source.lines() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let (word, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        if in_connect.is_some_and(|connect| indent > connect) {
            let flag = match word {
                "auth" => "--auth",
                "api-key" => "--api-key",
                _ => return Err(format!("the connect option `{word}` has no flag here")),
            };
            flags.insert(flag.to_owned(), substitute(rest.trim()));
            continue;
        }
        in_connect = None;
        match word {
            "connect" => {
                connects += 1;
                in_connect = Some(indent);
            }
            "test" => {}
            _ if word.starts_with('@') => return Err("a named connection".into()),
            "expect" if rest.starts_with("connect-refused") => {
                return Err("a connect that must fail".into());
            }
            _ => commands.push(format!("/{trimmed}")),
        }
    }
    if connects != 1 {
        return Err(format!("{connects} connections"));
    }
    Ok(PromptCase {
        flags,
        env,
        commands,
    })
}

/// Runs the real binary off the runtime's threads, with a deadline.
async fn wsprobe(dir: &Path, args: Vec<String>, env: Vec<(String, String)>) -> Output {
    let dir = dir.to_owned();
    let run = tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().expect("a temporary home");
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsprobe"));
        command
            .args(&args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path())
            .env_remove("WSPROBE_AUTH")
            .env_remove("WSPROBE_API_KEY")
            .env_remove("WS_URL")
            .env_remove("TOKEN")
            .env_remove("API_KEY")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("running wsprobe");
        child.wait_with_output().expect("waiting for wsprobe")
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("wsprobe finished within a minute")
        .expect("the blocking task ran")
}

/// A server that answers a route-tagged message with its body as is: a string unquoted
/// (`Hello`), anything else as JSON. Returns its URL.
async fn raw_echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let url = format!("ws://{}/dev", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Some(answer) = support::raw_body_answer(&text) else {
                        continue;
                    };
                    if ws.send(Message::text(answer)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_the_prompt_give_the_same_verdicts() {
    let server = case_server().await;
    let raw_echo = raw_echo_server().await;
    let mut names: Vec<_> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.join("script.wsp").exists())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("pass_") || name.starts_with("fail_")
        })
        .collect();
    names.sort();
    let mut compared = Vec::new();
    let mut mismatches = Vec::new();
    for dir in names {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Ok(case) = prompt_case(&dir) else {
            continue;
        };
        let server_kind = std::fs::read_to_string(dir.join("server")).unwrap_or_default();
        let url = match server_kind.trim() {
            "raw-echo" => raw_echo.clone(),
            _ => server.ws_url(),
        };
        let mut run_args = vec!["run".to_owned(), "script.wsp".to_owned()];
        match std::fs::read_to_string(dir.join("args")) {
            Ok(text) => run_args.extend(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| l.replace("{url}", &url)),
            ),
            Err(_) => {
                run_args.extend(["--url".to_owned(), url.clone()]);
                run_args.extend(DEFAULT_ARGS.iter().map(|a| (*a).to_owned()));
            }
        }
        let ran = wsprobe(&dir, run_args, Vec::new()).await;

        let mut connect_args = vec!["connect".to_owned(), url.clone(), "-w".into(), "0".into()];
        for (flag, value) in &case.flags {
            let flag = flag.split(' ').next().unwrap_or_default();
            connect_args.extend([flag.to_owned(), value.clone()]);
        }
        for command in &case.commands {
            connect_args.extend(["-x".to_owned(), command.clone()]);
        }
        let mut env = case.env.clone();
        env.push(("WS_URL".into(), url.clone()));
        let prompted = wsprobe(&dir, connect_args, env).await;

        compared.push(name.clone());
        let (run_code, prompt_code) = (ran.status.code(), prompted.status.code());
        if run_code != prompt_code {
            mismatches.push(format!(
                "case {name}: `run` exits {run_code:?}, the prompt {prompt_code:?}\n\
                 --- run stdout\n{}\n--- prompt stderr\n{}",
                String::from_utf8_lossy(&ran.stdout),
                String::from_utf8_lossy(&prompted.stderr)
            ));
        }
    }
    server.shutdown().await;
    for must in [
        "pass_echo_raw_text",
        "pass_inbox_keeps_unmatched",
        "pass_capture_interpolation",
        "pass_echo_auth_api_key",
        "pass_push_connections",
        "fail_closed",
        "fail_connect_unexpected",
        "fail_expect_next",
        "fail_secret_in_message",
    ] {
        assert!(
            compared.iter().any(|name| name == must),
            "{must} was not compared; compared: {compared:?}"
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
