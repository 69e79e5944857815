//! Integration tests: command. Whole scripts through the public parser API, and the
//! exact rustc-style rendering of every kind of syntax error (snapshot style: the
//! expected text is in the test).

use std::collections::HashMap;

use wsprobe_core::command::{
    Command, ConnectOption, ErrorKind, Expectation, FrameView, Payload, ReplInput, Script,
    parse_repl_line, parse_script,
};

/// The rendered, uncoloured errors of `source` (which must not parse).
fn errors(source: &str) -> String {
    match parse_script(source, "tests/echo.wsp") {
        Ok(script) => panic!("expected syntax errors, parsed {script:#?}"),
        Err(errors) => errors.render(false),
    }
}

fn parse(source: &str) -> Script {
    match parse_script(source, "tests/echo.wsp") {
        Ok(script) => script,
        Err(errors) => panic!("{}", errors.render(false)),
    }
}

/// One line per test and per statement: `test NAME` / `  LINE:COL [@TARGET] KEYWORD`.
fn outline(script: &Script) -> String {
    let mut out = String::new();
    for test in &script.tests {
        let kind = if test.implicit { " (implicit)" } else { "" };
        out.push_str(&format!("test {}{kind}\n", test.name));
        for statement in &test.statements {
            let target = statement
                .target
                .as_ref()
                .map(|t| format!("@{} ", t.value))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}:{} {target}{}\n",
                statement.span.line,
                statement.span.column,
                statement.command.keyword()
            ));
        }
    }
    out
}

const FULL_SCRIPT: &str = r#"# The canonical round trip, then the rest of the language.
connect ${WS_URL}
  auth Bearer ${TOKEN}
  api-key ${API_KEY}
  header X-Trace: abc
  subprotocol chat
send send "Hello World!"          # route-tagged
expect echo within 2s

test "refused without a key"
  connect nokey ${WS_URL}
  expect connect-refused 403

test "two clients"
  connect alice ${WS_URL}
  connect bob ${WS_URL}
  @alice send sendmessage {"data": "hi"}
  @bob expect json $.data == "hi"
  @bob expect nothing within 300ms

test frames
	text hello # this is sent too
	expect text hello
	binary 48656c6c6f
	expect next binary base64:SGVsbG8=
	ping
	expect pong
	capture conn = json $.connectionId within 1s
	post ${conn} {"push": 1}
	expect status 200
	get ${conn}
	expect response json $.connectedAt exists
	delete ${conn}
	echo full
	wait 10ms
	close 1000 bye
	expect closed 1000
"#;

#[test]
fn a_whole_script_parses_into_tests() {
    let script = parse(FULL_SCRIPT);
    assert_eq!(script.file_name, "tests/echo.wsp");
    assert_eq!(
        outline(&script),
        "\
test echo (implicit)
  2:1 connect
  7:1 send
  8:1 expect
test refused without a key
  11:3 connect
test two clients
  15:3 connect
  16:3 connect
  17:3 @alice send
  18:3 @bob expect
  19:3 @bob expect
test frames
  22:2 text
  23:2 expect
  24:2 binary
  25:2 expect
  26:2 ping
  27:2 expect
  28:2 capture
  29:2 post
  30:2 expect
  31:2 get
  32:2 expect
  33:2 delete
  34:2 echo
  35:2 sleep
  36:2 close
  37:2 expect
"
    );

    let first = &script.tests[0].statements[0];
    let Command::Connect(connect) = &first.command else {
        panic!("{first:?}")
    };
    assert_eq!(connect.options.len(), 4);
    assert!(matches!(&connect.options[2].value,
        ConnectOption::Header { name, value } if name == "X-Trace" && value.source == "abc"));

    let refused = &script.tests[1].statements[0];
    let Command::Connect(connect) = &refused.command else {
        panic!("{refused:?}")
    };
    assert_eq!(
        connect
            .expect_refused
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .map(|s| s.value),
        Some(403)
    );

    let Command::Text(text) = &script.tests[3].statements[0].command else {
        panic!()
    };
    assert_eq!(text.as_literal(), Some("hello # this is sent too"));
}

#[test]
fn windows_line_endings_and_tabs_are_fine() {
    let script = parse("connect\r\n\tauth x\r\nsend send hi\r\n");
    let Command::Connect(connect) = &script.tests[0].statements[0].command else {
        panic!()
    };
    assert_eq!(connect.options.len(), 1);
    let Command::Send { payload, .. } = &script.tests[0].statements[1].command else {
        panic!()
    };
    assert_eq!(payload.as_ref().map(|p| p.span().len), Some(2));
}

#[test]
fn a_parsed_matcher_checks_frames() {
    let script = parse("connect\nexpect json $.message == \"Forbidden\"");
    let Command::Expect(expect) = &script.tests[0].statements[1].command else {
        panic!()
    };
    let Expectation::Message(matcher) = &expect.expectation else {
        panic!()
    };
    let resolved = matcher
        .resolve(&HashMap::<String, String>::new(), None)
        .unwrap();
    assert!(resolved.matches(&FrameView::Text(r#"{"message": "Forbidden"}"#)));
    assert_eq!(
        resolved.check(&FrameView::Text(r#"{"message": "Internal server error"}"#)),
        Err(r#"$.message is "Internal server error""#.to_owned())
    );
}

#[test]
fn unknown_command_with_a_hint() {
    assert_eq!(
        errors("connect\nsned send \"hi\""),
        r#"error: unknown command `sned`
 --> tests/echo.wsp:2:1
  |
2 | sned send "hi"
  | ^^^^
  |
  = hint: did you mean `send`?
"#
    );
}

#[test]
fn unknown_command_without_a_close_match_lists_the_commands() {
    assert_eq!(
        errors("connect\nfrobnicate now"),
        "error: unknown command `frobnicate`
 --> tests/echo.wsp:2:1
  |
2 | frobnicate now
  | ^^^^^^^^^^
  |
  = hint: the commands are `connect`, `send`, `text`, `binary`, `ping`, `pong`, `close`, `expect`, `capture`, `sleep`, `wait`, `post`, `get`, `delete`, `echo`
"
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        errors("connect\nexpect echo within 2 seconds"),
        "error: invalid duration `2`
 --> tests/echo.wsp:2:20
  |
2 | expect echo within 2 seconds
  |                    ^
  |
  = hint: `2` has no unit; write e.g. `2s` or `2ms`
"
    );
}

#[test]
fn bad_json_payload() {
    assert_eq!(
        errors("connect\nsend sendmessage {\"data\": \"hi\",}"),
        r#"error: invalid JSON: trailing comma
 --> tests/echo.wsp:2:32
  |
2 | send sendmessage {"data": "hi",}
  |                                ^
"#
    );
    assert_eq!(
        errors("connect\nsend sendmessage {\"data\": \"hi\""),
        r#"error: invalid JSON: EOF while parsing an object
 --> tests/echo.wsp:2:31
  |
2 | send sendmessage {"data": "hi"
  |                               ^
  |
  = hint: the JSON value must end on the same line
"#
    );
}

#[test]
fn bare_word_where_json_is_expected() {
    assert_eq!(
        errors("connect\nexpect json $.message == Forbidden"),
        r#"error: expected a JSON value, found `Forbidden`
 --> tests/echo.wsp:2:26
  |
2 | expect json $.message == Forbidden
  |                          ^^^^^^^^^
  |
  = hint: JSON strings are quoted: `"Forbidden"`
"#
    );
}

#[test]
fn bad_json_path() {
    assert_eq!(
        errors("connect\nexpect json $.items[0 == 1"),
        "error: invalid JSON path: in long-hand segment, expected closing ']'
 --> tests/echo.wsp:2:23
  |
2 | expect json $.items[0 == 1
  |                       ^
  |
  = hint: JSON paths follow RFC 9535, e.g. `$.message`, `$.items[0].id`, `$['a b']`
"
    );
}

#[test]
fn bad_regex() {
    assert_eq!(
        errors("connect\nexpect text matches /a(b/ within 1s"),
        "error: invalid regex: unclosed group
 --> tests/echo.wsp:2:21
  |
2 | expect text matches /a(b/ within 1s
  |                     ^^^^^
"
    );
}

#[test]
fn bad_close_code() {
    assert_eq!(
        errors("connect\nclose 1005 bye"),
        "error: `1005` is not a close code a client may send
 --> tests/echo.wsp:2:7
  |
2 | close 1005 bye
  |       ^^^^
  |
  = hint: use 1000 (normal closure), 1001-1003, 1007-1014, or 3000-4999 for an application code
"
    );
}

#[test]
fn indented_option_without_a_connect() {
    assert_eq!(
        errors("# setup\n  auth Bearer ${TOKEN}\nconnect\n"),
        "error: `auth` is a connect option, but no `connect` line is above it
 --> tests/echo.wsp:2:3
  |
2 |   auth Bearer ${TOKEN}
  |   ^^^^
  |
  = hint: put options on indented lines right below `connect`
"
    );
    assert_eq!(
        errors("connect\nheader X-A: b\n"),
        "error: a connect option must be indented under its `connect`
 --> tests/echo.wsp:2:1
  |
2 | header X-A: b
  | ^^^^^^
  |
  = hint: indent this line more than the `connect` line above it
"
    );
}

#[test]
fn secrets_on_option_lines_are_masked_in_errors() {
    assert_eq!(
        errors("send send hi\n  auth Bearer s3cr3t-${SUFFIX}\nconnect"),
        "error: `send` needs a connection, and no `connect` is above it
 --> tests/echo.wsp:1:1
  |
1 | send send hi
  | ^^^^
  |
  = hint: open one first: `connect URL` (or just `connect`, with `--url`)

error: `auth` is a connect option, but no `connect` line is above it
 --> tests/echo.wsp:2:3
  |
2 |   auth Bearer *******${SUFFIX}
  |   ^^^^
  |
  = hint: put options on indented lines right below `connect`
"
    );
}

#[test]
fn unterminated_string() {
    assert_eq!(
        errors("connect\nexpect text \"hello within 2s"),
        r#"error: unterminated string
 --> tests/echo.wsp:2:13
  |
2 | expect text "hello within 2s
  |             ^^^^^^^^^^^^^^^^ no closing `"` on this line
"#
    );
}

#[test]
fn unknown_connection_name() {
    assert_eq!(
        errors("connect alice ${URL}\n@bob expect json $.data == \"hi\""),
        r#"error: unknown connection `@bob`
 --> tests/echo.wsp:2:1
  |
2 | @bob expect json $.data == "hi"
  | ^^^^
  |
  = hint: the connections opened above are `@alice`; open this one with `connect bob URL`
"#
    );
    // A name is known only below its `connect`.
    assert_eq!(
        errors("@alice ping\nconnect alice"),
        "error: unknown connection `@alice`
 --> tests/echo.wsp:1:1
  |
1 | @alice ping
  | ^^^^^^
  |
  = hint: name a connection above this line: `connect alice URL`
"
    );
}

#[test]
fn missing_argument() {
    assert_eq!(
        errors("connect\nexpect json $.message =="),
        "error: missing the value after `==`
 --> tests/echo.wsp:2:25
  |
2 | expect json $.message ==
  |                         ^
  |
  = hint: usage: expect json PATH (== | != | < | > | <= | >=) VALUE, or PATH contains VALUE, PATH matches REGEX, PATH exists, PATH not exists
"
    );
    assert_eq!(
        errors("connect\nsend"),
        "error: missing the route
 --> tests/echo.wsp:2:5
  |
2 | send
  |     ^
  |
  = hint: usage: send ROUTE [PAYLOAD]
"
    );
}

#[test]
fn commands_in_the_wrong_place() {
    assert_eq!(
        errors("send send hi\nconnect\nquit\nsend x\nexpect connect-refused 403"),
        "error: `send` needs a connection, and no `connect` is above it
 --> tests/echo.wsp:1:1
  |
1 | send send hi
  | ^^^^
  |
  = hint: open one first: `connect URL` (or just `connect`, with `--url`)

error: `quit` only works at the `wsprobe connect` prompt
 --> tests/echo.wsp:3:1
  |
3 | quit
  | ^^^^

error: `expect connect-refused` must come right after the `connect` it checks
 --> tests/echo.wsp:5:1
  |
5 | expect connect-refused 403
  | ^^^^^^^^^^^^^^^^^^^^^^^^^^
  |
  = hint: put it on the line after `connect` (and its indented options)
"
    );
}

#[test]
fn every_error_in_a_file_is_reported() {
    let source = "\
connect ${WS_URL}
  auth Bearer ${TOKEN}
sned send \"hi\"
expect echo within 2
send send ok

@bob ping
close 1005
";
    let parsed = parse_script(source, "tests/echo.wsp").unwrap_err();
    let kinds: Vec<ErrorKind> = parsed.errors.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::UnknownCommand,
            ErrorKind::BadDuration,
            ErrorKind::UnknownConnection,
            ErrorKind::BadCloseCode
        ]
    );
    assert_eq!(
        parsed.render(false),
        "error: unknown command `sned`
 --> tests/echo.wsp:3:1
  |
3 | sned send \"hi\"
  | ^^^^
  |
  = hint: did you mean `send`?

error: invalid duration `2`
 --> tests/echo.wsp:4:20
  |
4 | expect echo within 2
  |                    ^
  |
  = hint: `2` has no unit; write e.g. `2s` or `2ms`

error: unknown connection `@bob`
 --> tests/echo.wsp:7:1
  |
7 | @bob ping
  | ^^^^
  |
  = hint: name a connection above this line: `connect bob URL`

error: `1005` is not a close code a client may send
 --> tests/echo.wsp:8:7
  |
8 | close 1005
  |       ^^^^
  |
  = hint: use 1000 (normal closure), 1001-1003, 1007-1014, or 3000-4999 for an application code
"
    );
    // The plain rendering is also what `Display` gives (and what goes into JUnit).
    assert_eq!(parsed.to_string(), parsed.render(false));
}

#[test]
fn repl_lines_render_without_a_file() {
    let line = "/sned x";
    let error = parse_repl_line(line).unwrap_err();
    assert_eq!(
        error.render_line(line, false),
        "error: unknown command `sned`
 | /sned x
 |  ^^^^
 |
 = hint: did you mean `/send`?
"
    );
    let line = "/test x";
    assert_eq!(
        parse_repl_line(line).unwrap_err().render_line(line, false),
        "error: `test` only works in script files
 | /test x
 |  ^^^^
"
    );
}

#[test]
fn repl_lines_and_script_lines_are_one_language() {
    let from_script = parse("connect\nsend send {\"a\": [1, 2]} # note");
    let Command::Send { route, payload } = &from_script.tests[0].statements[1].command else {
        panic!()
    };
    let Ok(ReplInput::Command(statement)) = parse_repl_line("/send send {\"a\": [1, 2]} # note")
    else {
        panic!()
    };
    let Command::Send {
        route: repl_route,
        payload: repl_payload,
    } = &statement.command
    else {
        panic!()
    };
    assert_eq!(route.source, repl_route.source);
    let literal = |payload: &Option<Payload>| match payload {
        Some(Payload::Json(json)) => json.literal.clone(),
        _ => None,
    };
    assert_eq!(literal(payload), Some(serde_json::json!({"a": [1, 2]})));
    assert_eq!(literal(payload), literal(repl_payload));
    // Only the columns differ: the prompt line has a leading `/`.
    assert_eq!(statement.keyword.column, 2);
    assert!(matches!(parse_repl_line("hello"), Ok(ReplInput::Text(t)) if t == "hello"));
    assert!(matches!(parse_repl_line("//help"), Ok(ReplInput::Text(t)) if t == "/help"));
}

/// Every script example (a `wsp` block) in docs/language.md parses; each gets a `connect`
/// first so that fragments that send have a connection. (`docs::` runs the whole ones.)
#[test]
fn the_examples_in_the_language_docs_parse() {
    let docs = include_str!("../../../../docs/language.md");
    let mut checked = 0;
    for block in docs.split("```wsp").skip(1) {
        let Some((_info, block)) = block.split_once('\n') else {
            continue;
        };
        let Some((code, _)) = block.split_once("```") else {
            continue;
        };
        let source = format!("connect\n{code}");
        if let Err(errors) = parse_script(&source, "docs.wsp") {
            panic!("{code}\n{}", errors.render(false));
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} examples found");
}

#[test]
fn undefined_variables_are_found_before_running() {
    let script = parse(
        "connect ${WS_URL}\n  auth Bearer ${TOKEN}\nsend send {\"id\": \"${ID}\"}\ncapture conn = json $.connectionId\npost ${conn} {\"n\": ${N}}\nexpect json $.who == \"${WHO}\"\n",
    );
    let vars: HashMap<String, String> = [("WS_URL", "ws://127.0.0.1:1"), ("N", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let undefined: Vec<String> = script
        .undefined_variables(&vars)
        .iter()
        .map(|e| format!("{} at {}", e, e.span()))
        .collect();
    assert_eq!(
        undefined,
        [
            "undefined variable `TOKEN` at 2:15",
            "undefined variable `ID` at 3:19",
            "undefined variable `WHO` at 6:23",
        ]
    );
}

#[test]
fn runtime_messages_render_against_the_script() {
    let script = parse("connect\n  auth Bearer ${TOKEN}\nsend send \"hi\"\n");
    let vars = HashMap::<String, String>::new();
    let undefined = script.undefined_variables(&vars);
    assert_eq!(
        script.render(&undefined[0].diagnostic(), false),
        "error: undefined variable `TOKEN`
 --> tests/echo.wsp:2:15
  |
2 |   auth Bearer ${TOKEN}
  |               ^^^^^^^^
  |
  = hint: set it with `--var TOKEN=VALUE`, in the environment, or with `capture TOKEN = …` above
"
    );
    let Command::Send { payload, .. } = &script.tests[0].statements[1].command else {
        panic!()
    };
    assert_eq!(
        payload.as_ref().map(|p| p.resolve(&vars)),
        Some(Ok(serde_json::json!("hi")))
    );
    assert_eq!(script.source_line(3), "send send \"hi\"");
    assert_eq!(script.source_line(9), "");
}

/// No input makes the parser panic: every prefix of every line of a varied script, and
/// each of them with awkward characters inserted, parses to a script or to errors, and
/// the errors render.
#[test]
fn no_input_makes_the_parser_panic() {
    let corpus = format!(
        "{FULL_SCRIPT}\n{}",
        r#"expect json $[?@.a == 'x y'].b contains "z" within 1s
expect json-subset {"a": [1, {"b": "${X}"}]}
capture next id= regex /id=(\w+)\/x/ within 2s
send s {"n": ${N}, "s": "é\"${S}\u00e9"}
close 4000 ünïcödé réason
@alice expect text matches "\\d+ \"q\""
header X-A: ${V}
expect pong "a b"
binary base64:SGVsbG8
help /send
pretty on"#
    );
    let awkward = ['"', '$', '{', '\\', '/', '#', 'é'];
    for line in corpus.lines() {
        let boundaries: Vec<usize> = line
            .char_indices()
            .map(|(i, _)| i)
            .chain([line.len()])
            .collect();
        for &cut in &boundaries {
            let prefix = &line[..cut];
            let mut variants = vec![prefix.to_owned()];
            for c in awkward {
                variants.push(format!("{prefix}{c}{}", &line[cut..]));
            }
            for variant in variants {
                let source = format!("connect alice\n{variant}\n");
                if let Err(errors) = parse_script(&source, "fuzz.wsp") {
                    assert!(!errors.render(true).is_empty());
                }
                let repl = format!("/{}", variant.trim_start());
                if let Err(error) = parse_repl_line(&repl) {
                    assert!(!error.render_line(&repl, false).is_empty());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The command engine, driven directly against `serve`

mod engine {
    use std::collections::HashMap;
    use std::time::Duration;

    use futures_util::FutureExt as _;
    use wsprobe_core::client::{self, ClientConfig};
    use wsprobe_core::command::engine::{Done, Engine, EngineOptions, Fault};
    use wsprobe_core::command::vars::Vars;
    use wsprobe_core::command::{EchoPolicy, ReplInput, Statement, parse_repl_line};
    use wsprobe_core::message::RouteFields;
    use wsprobe_core::session::Session;

    use crate::support::{spawn_default_server, within};

    const SESSION: usize = 0;

    fn statement(line: &str) -> Statement {
        match parse_repl_line(line) {
            Ok(ReplInput::Command(statement)) => statement,
            other => panic!("not a command: {line}: {other:?}"),
        }
    }

    async fn engine(url: &str) -> Engine {
        let options = EngineOptions {
            timeout: Duration::from_secs(5),
            fields: RouteFields::default(),
            echo: EchoPolicy::Body,
            management_url: None,
            stage_url: None,
            client: ClientConfig::default(),
        };
        let mut engine = Engine::new(options, Vars::new(HashMap::new()));
        let url = client::parse_url(url).expect("the server's URL");
        let connection = client::connect(&url, &ClientConfig::default())
            .await
            .expect("connecting");
        engine.set_url(SESSION, url);
        engine.open(SESSION, Session::start(connection));
        engine
    }

    async fn run(engine: &mut Engine, line: &str) -> Result<Done, Fault> {
        within(line, engine.execute(&statement(line), Some(SESSION))).await
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_no_frame_and_consumes_none() {
        let server = spawn_default_server().await;
        let mut engine = engine(&server.ws_url()).await;
        let sent = run(&mut engine, r#"/send send "a""#).await;
        assert!(
            matches!(sent, Ok(Done::Sent { echo: Some(_), .. })),
            "{sent:?}"
        );
        // A wait for something else starts (and may read "a"), then is dropped, as the
        // prompt drops it on Ctrl-C.
        let other = statement(r#"/expect json "b" within 5s"#);
        let polled = engine.execute(&other, Some(SESSION)).now_or_never();
        assert!(polled.is_none(), "the wait for \"b\" cannot be over yet");
        match run(&mut engine, r#"/expect json "a" within 5s"#).await {
            Ok(Done::Matched { frame, .. }) => {
                assert_eq!(frame.frame.as_text(), Some("\"a\""));
            }
            other => panic!("{other:?}"),
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn sends_leave_the_inbox_alone_and_echo_is_one_verdict() {
        let server = spawn_default_server().await;
        let mut engine = engine(&server.ws_url()).await;
        run(&mut engine, r#"/send send "A""#).await.expect("sent");
        run(&mut engine, "/text not routed").await.expect("sent");
        run(&mut engine, r#"/send send "B""#).await.expect("sent");
        // Both echoes are still there, whatever was sent in between: `expect echo` (of the
        // last send, "B") skips "A" and the error frame, which stay for later.
        for line in ["/expect echo", r#"/expect json "A""#, "/expect any"] {
            let done = run(&mut engine, line).await;
            assert!(matches!(done, Ok(Done::Matched { .. })), "{line}: {done:?}");
        }
        let failed = run(&mut engine, "/expect echo within 100ms").await;
        match failed {
            Err(Fault::Failed(failed)) => {
                assert_eq!(failed.command, r#"expect echo "B""#);
                assert_eq!(
                    failed.label.as_deref(),
                    Some("nothing matched within 100ms")
                );
            }
            other => panic!("{other:?}"),
        }
        server.shutdown().await;
    }
}
