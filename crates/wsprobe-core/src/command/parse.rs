//! The line parser: one line (of a script, or typed at the prompt) into a [`Statement`],
//! a `test` line, or a connect option. `assemble` puts a script's lines together.

use std::time::Duration;

use base64::Engine;
use serde_json_path::JsonPath;

use super::ast::*;
use super::error::{ErrorKind, SyntaxError, did_you_mean};
use super::help::{self, EXPECT_WORDS, MATCHER_NAMES, Scope};
use super::reader::{LineReader, Token};
use super::template::{JsonTemplate, Template, is_variable_name};
use crate::values;

/// Where a line comes from: the rules differ slightly (see [`Scope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Script,
    Repl,
}

/// What one line holds.
// One value per line, consumed at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Line {
    /// Nothing but spaces and a comment.
    Blank,
    /// `test NAME`.
    Test { name: String, span: Span },
    /// A command.
    Statement(Statement),
    /// An indented connect option.
    ConnectOption(Spanned<ConnectOption>, Span),
    /// `expect connect-refused [STATUS]`.
    ConnectRefused(ExpectRefused),
}

pub(crate) const CONNECT_OPTIONS: &[&str] = &[
    "auth",
    "api-key",
    "header",
    "subprotocol",
    "origin",
    "reconnect",
];

/// Parses a REPL line; see [`super::parse_repl_line`].
pub(crate) fn parse_repl_line(line: &str) -> Result<ReplInput, SyntaxError> {
    if line.is_empty() {
        return Ok(ReplInput::Empty);
    }
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(ReplInput::Text(format!("/{literal}")));
    }
    if !line.starts_with('/') {
        return Ok(ReplInput::Text(line.to_owned()));
    }
    match parse_line(line, 1, 1, Mode::Repl)? {
        Line::Statement(statement) => Ok(ReplInput::Command(statement)),
        Line::Blank => Err(SyntaxError::new(
            ErrorKind::MissingArgument,
            "missing a command after `/`",
            Span::new(1, 2, 1),
        )
        .with_hint("`/help` lists the commands; `//text` sends `/text`")),
        // parse_line refuses these at the prompt.
        Line::Test { span, .. } | Line::ConnectOption(_, span) => Err(SyntaxError::new(
            ErrorKind::ScriptOnly,
            "this only works in script files",
            span,
        )),
        Line::ConnectRefused(refused) => Err(SyntaxError::new(
            ErrorKind::ScriptOnly,
            "`expect connect-refused` only works in script files",
            refused.span,
        )),
    }
}

pub(crate) fn indent_of(text: &str) -> usize {
    text.len() - text.trim_start_matches([' ', '\t']).len()
}

/// Parses one line, starting at byte `start` (1 for a REPL line's `/`).
pub(crate) fn parse_line(
    text: &str,
    line_no: usize,
    start: usize,
    mode: Mode,
) -> Result<Line, SyntaxError> {
    let mut r = LineReader::starting_at(text, line_no, start);
    r.skip_spaces();
    let line_start = r.pos();
    let Some((first, first_span)) = r.word() else {
        return Ok(Line::Blank);
    };

    let target = match first.strip_prefix('@') {
        Some(name) => {
            if !is_connection_name(name) {
                return Err(SyntaxError::new(
                    ErrorKind::BadName,
                    format!("`{first}` is not a connection name"),
                    first_span,
                )
                .with_hint("write `@NAME` with the name given to `connect NAME URL`"));
            }
            Some(Spanned::new(name.to_owned(), first_span))
        }
        None => None,
    };
    let (keyword, keyword_span) = if target.is_some() {
        r.word().ok_or_else(|| {
            SyntaxError::new(
                ErrorKind::MissingArgument,
                format!("missing a command after `{first}`"),
                r.end_span(),
            )
            .with_hint(format!("e.g. `{first} send ROUTE PAYLOAD`"))
        })?
    } else {
        (first, first_span)
    };

    let Some(entry) = help::lookup(keyword) else {
        return Err(unknown_command(keyword, keyword_span, mode));
    };
    match (entry.scope, mode) {
        (Scope::Repl, Mode::Script) => {
            return Err(SyntaxError::new(
                ErrorKind::ReplOnly,
                format!("`{keyword}` only works at the `wsprobe connect` prompt"),
                keyword_span,
            ));
        }
        (Scope::Script, Mode::Repl) => {
            return Err(SyntaxError::new(
                ErrorKind::ScriptOnly,
                format!("`{keyword}` only works in script files"),
                keyword_span,
            ));
        }
        _ => {}
    }

    if CONNECT_OPTIONS.contains(&keyword) || keyword == "test" {
        if let Some(target) = &target {
            return Err(target_not_allowed(target, keyword));
        }
        if keyword == "test" {
            let name = test_name(&mut r, keyword_span)?;
            return Ok(Line::Test {
                name,
                span: keyword_span,
            });
        }
        let option = connect_option(&mut r, keyword, keyword_span)?;
        return Ok(Line::ConnectOption(option, keyword_span));
    }

    let command = match keyword {
        "connect" => Command::Connect(connect(&mut r)?),
        "send" => send(&mut r)?,
        "text" => {
            let (rest, at) = r.rest_verbatim();
            Command::Text(Template::parse(rest, line_no, r.column_at(at))?)
        }
        "binary" => Command::Binary(binary_data(&mut r, "binary")?.unwrap_or_default()),
        "ping" => Command::Ping(control_data(&mut r, "a ping payload")?),
        "pong" => Command::Pong(control_data(&mut r, "a pong payload")?),
        "close" => close(&mut r)?,
        "expect" => match expect(&mut r, keyword_span)? {
            Expected::Command(expect) => Command::Expect(expect),
            Expected::Refused(refused) => {
                if let Some(target) = &target {
                    return Err(target_not_allowed(target, "expect connect-refused"));
                }
                return Ok(Line::ConnectRefused(refused));
            }
        },
        "capture" => Command::Capture(capture(&mut r)?),
        "sleep" | "wait" => {
            let duration = required_duration(&mut r, keyword)?;
            r.expect_end("the duration")?;
            Command::Sleep(duration)
        }
        "keepalive" => Command::KeepAlive(keepalive(&mut r)?),
        "post" => {
            let connection_id = connection_id(&mut r, "post")?;
            let payload = payload(&mut r)?;
            Command::Post {
                connection_id,
                payload,
            }
        }
        "get" | "delete" => {
            let connection_id = connection_id(&mut r, keyword)?;
            r.expect_end("the connection id")?;
            if keyword == "get" {
                Command::Get { connection_id }
            } else {
                Command::Delete { connection_id }
            }
        }
        "echo" => {
            let (word, span) = choice(&mut r, "echo", &["body", "full", "off"])?;
            let policy = match word {
                "body" => EchoPolicy::Body,
                "full" => EchoPolicy::Full,
                _ => EchoPolicy::Off,
            };
            r.expect_end("the echo policy")?;
            Command::Echo(Spanned::new(policy, span))
        }
        "pretty" => {
            let (word, _) = choice(&mut r, "pretty", &["on", "off"])?;
            r.expect_end("`on` or `off`")?;
            Command::Pretty(word == "on")
        }
        "help" => {
            let topic = match r.word() {
                Some((word, span)) => {
                    let name = word.strip_prefix('/').unwrap_or(word);
                    if help::lookup(name).is_none() {
                        return Err(
                            unknown_command(name, span, mode).with_label("no help for this")
                        );
                    }
                    Some(Spanned::new(name.to_owned(), span))
                }
                None => None,
            };
            r.expect_end("the command name")?;
            Command::Help(topic)
        }
        // "quit" | "exit"
        _ => {
            r.expect_end(&format!("`{keyword}`"))?;
            Command::Quit
        }
    };

    if let Some(target) = target.as_ref().filter(|_| !command.uses_connection()) {
        return Err(target_not_allowed(target, keyword));
    }
    let end = text[..r.pos()].trim_end().len();
    Ok(Line::Statement(Statement {
        target,
        command,
        keyword: keyword_span,
        span: r.span(line_start, end.max(line_start)),
    }))
}

fn unknown_command(word: &str, span: Span, mode: Mode) -> SyntaxError {
    let error = SyntaxError::new(
        ErrorKind::UnknownCommand,
        format!("unknown command `{word}`"),
        span,
    );
    let slash = if mode == Mode::Repl { "/" } else { "" };
    let candidates: Vec<&str> = match mode {
        Mode::Script => help::all_keywords().collect(),
        Mode::Repl => help::command_names().to_vec(),
    };
    match did_you_mean(word, candidates) {
        Some(suggestion) => error.with_hint(format!("did you mean `{slash}{suggestion}`?")),
        None if mode == Mode::Repl => {
            error.with_hint("`/help` lists the commands; `//text` sends `/text`")
        }
        None => error.with_hint(format!(
            "the commands are {}",
            help::command_names()
                .iter()
                .filter(|name| !matches!(**name, "pretty" | "help" | "quit" | "exit"))
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn target_not_allowed(target: &Spanned<String>, keyword: &str) -> SyntaxError {
    SyntaxError::new(
        ErrorKind::Misplaced,
        format!("`@{}` does not apply to `{keyword}`", target.value),
        target.span,
    )
    .with_hint("only commands that act on a connection take `@NAME` (send, text, binary, ping, pong, close, expect, capture)")
}

/// A connection name: `[A-Za-z_][A-Za-z0-9_-]*`.
pub(crate) fn is_connection_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn missing(r: &LineReader, what: &str, usage: &str) -> SyntaxError {
    SyntaxError::new(
        ErrorKind::MissingArgument,
        format!("missing {what}"),
        r.end_span(),
    )
    .with_hint(format!("usage: {usage}"))
}

fn usage_of(keyword: &str) -> &'static str {
    help::lookup(keyword).map_or("", |entry| entry.usage.trim_start())
}

/// A token as a template; a quoted token's variables point inside its quotes.
fn template_of(token: &Token, line: usize) -> Result<Template, SyntaxError> {
    let column = token.span.column + usize::from(token.quoted);
    let mut template = Template::parse(&token.text, line, column)?;
    template.span = token.span;
    Ok(template)
}

fn required_template(
    r: &mut LineReader,
    what: &str,
    keyword: &str,
) -> Result<Template, SyntaxError> {
    let token = r
        .token()?
        .ok_or_else(|| missing(r, what, usage_of(keyword)))?;
    template_of(&token, r.line())
}

fn choice<'a>(
    r: &mut LineReader<'a>,
    keyword: &str,
    choices: &[&str],
) -> Result<(&'a str, Span), SyntaxError> {
    let listed = choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some((word, span)) = r.word() else {
        return Err(missing(r, &listed, usage_of(keyword)));
    };
    if choices.contains(&word) {
        return Ok((word, span));
    }
    let error = SyntaxError::new(
        ErrorKind::UnexpectedArgument,
        format!("expected {listed}, found `{word}`"),
        span,
    );
    Err(match did_you_mean(word, choices.iter().copied()) {
        Some(suggestion) => error.with_hint(format!("did you mean `{suggestion}`?")),
        None => error.with_hint(format!("usage: {}", usage_of(keyword))),
    })
}

fn duration_of(text: &str, span: Span) -> Result<Spanned<Duration>, SyntaxError> {
    values::parse_duration(text)
        .map(|duration| Spanned::new(duration, span))
        .map_err(|message| {
            SyntaxError::new(
                ErrorKind::BadDuration,
                format!("invalid duration `{text}`"),
                span,
            )
            .with_hint(message)
        })
}

fn required_duration(r: &mut LineReader, keyword: &str) -> Result<Spanned<Duration>, SyntaxError> {
    let (word, span) = r
        .word()
        .ok_or_else(|| missing(r, "a duration", usage_of(keyword)))?;
    duration_of(word, span)
}

/// An optional trailing `within DURATION`.
fn within(r: &mut LineReader) -> Result<Option<Spanned<Duration>>, SyntaxError> {
    if r.peek_word() != Some("within") {
        return Ok(None);
    }
    r.word();
    let (word, span) = r.word().ok_or_else(|| {
        missing(
            r,
            "a duration after `within`",
            "… within DURATION, e.g. `within 2s`",
        )
    })?;
    duration_of(word, span).map(Some)
}

fn connect(r: &mut LineReader) -> Result<Connect, SyntaxError> {
    let first = r.token()?;
    let second = r.token()?;
    r.expect_end("the URL")?;
    let line = r.line();
    let name_of = |token: &Token| Spanned::new(token.text.clone(), token.span);
    Ok(match (first, second) {
        (None, _) => Connect {
            name: None,
            url: None,
            options: Vec::new(),
            expect_refused: None,
        },
        (Some(only), None) => {
            let is_name = !only.quoted && is_connection_name(&only.text);
            Connect {
                name: is_name.then(|| name_of(&only)),
                url: if is_name {
                    None
                } else {
                    Some(template_of(&only, line)?)
                },
                options: Vec::new(),
                expect_refused: None,
            }
        }
        (Some(name), Some(url)) => {
            if name.quoted || !is_connection_name(&name.text) {
                return Err(SyntaxError::new(
                    ErrorKind::BadName,
                    format!("`{}` is not a connection name", name.text),
                    name.span,
                )
                .with_hint("write `connect NAME URL`; a name is letters, digits, `_` and `-`"));
            }
            Connect {
                name: Some(name_of(&name)),
                url: Some(template_of(&url, line)?),
                options: Vec::new(),
                expect_refused: None,
            }
        }
    })
}

fn connect_option(
    r: &mut LineReader,
    keyword: &str,
    keyword_span: Span,
) -> Result<Spanned<ConnectOption>, SyntaxError> {
    let line = r.line();
    let option = match keyword {
        "auth" | "api-key" | "header" => {
            let Some((value, at)) = r.rest_free_text() else {
                return Err(missing(r, "a value", usage_of(keyword)));
            };
            let column = r.column_at(at);
            match keyword {
                "auth" => {
                    ConnectOption::Auth(SecretTemplate(Template::parse(value, line, column)?))
                }
                "api-key" => {
                    ConnectOption::ApiKey(SecretTemplate(Template::parse(value, line, column)?))
                }
                _ => header_option(value, line, column)?,
            }
        }
        "reconnect" => reconnect_option(r)?,
        "subprotocol" => {
            let value = required_template(r, "a subprotocol name", keyword)?;
            r.expect_end("the subprotocol")?;
            ConnectOption::Subprotocol(value)
        }
        // "origin"
        _ => {
            let value = required_template(r, "a URL", keyword)?;
            r.expect_end("the origin")?;
            ConnectOption::Origin(value)
        }
    };
    let end = r.pos();
    let span = keyword_span.to(Span::new(line, r.column_at(end), 0));
    Ok(Spanned::new(option, span))
}

/// `reconnect [always] [max N]`.
fn reconnect_option(r: &mut LineReader) -> Result<ConnectOption, SyntaxError> {
    let mut always = false;
    let mut max = None;
    while let Some((word, span)) = r.word() {
        match word {
            "always" if !always && max.is_none() => always = true,
            "max" if max.is_none() => {
                let (count, span) = r.word().ok_or_else(|| {
                    missing(r, "a number of attempts after `max`", usage_of("reconnect"))
                })?;
                let value = count
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        SyntaxError::new(
                            ErrorKind::UnexpectedArgument,
                            format!("`{count}` is not a number of attempts"),
                            span,
                        )
                        .with_hint("write a whole number of 1 or more, e.g. `max 5`")
                    })?;
                max = Some(Spanned::new(value, span));
            }
            _ => {
                return Err(SyntaxError::new(
                    ErrorKind::UnexpectedArgument,
                    format!("unexpected `{word}`"),
                    span,
                )
                .with_hint(format!("usage: {}", usage_of("reconnect"))));
            }
        }
    }
    Ok(ConnectOption::Reconnect { always, max })
}

/// `keepalive DUR [TEXT]`, `keepalive off`, or `keepalive` alone.
fn keepalive(r: &mut LineReader) -> Result<KeepAliveCommand, SyntaxError> {
    let line = r.line();
    match r.word() {
        None => Ok(KeepAliveCommand::Show),
        Some(("off", _)) => {
            r.expect_end("`off`")?;
            Ok(KeepAliveCommand::Off)
        }
        Some((word, span)) => {
            let every = duration_of(word, span)?;
            if every.value.is_zero() {
                return Err(SyntaxError::new(
                    ErrorKind::BadDuration,
                    "a keepalive interval must be longer than zero",
                    span,
                )
                .with_hint("e.g. `keepalive 5m`, or `keepalive off` to stop"));
            }
            r.skip_spaces();
            let text = match r.rest_free_text() {
                Some((rest, at)) => Some(Template::parse(rest, line, r.column_at(at))?),
                None => None,
            };
            Ok(KeepAliveCommand::Every { every, text })
        }
    }
}

fn header_option(value: &str, line: usize, column: usize) -> Result<ConnectOption, SyntaxError> {
    let span = Span::new(line, column, value.chars().count());
    // Check the shape with the same rules as `-H`, with variables standing in as text.
    let header = values::parse_header(value).map_err(|message| {
        SyntaxError::new(ErrorKind::BadHeader, "invalid header", span).with_hint(message)
    })?;
    let colon = value.find(':').unwrap_or(0);
    let after_colon = &value[colon + 1..];
    let value_offset = colon + 1 + (after_colon.len() - after_colon.trim_start().len());
    let value_column = column + value[..value_offset].chars().count();
    Ok(ConnectOption::Header {
        name: header.name,
        value: Template::parse(&header.value, line, value_column)?,
    })
}

fn test_name(r: &mut LineReader, keyword_span: Span) -> Result<String, SyntaxError> {
    r.skip_spaces();
    if r.remaining().starts_with('"') {
        let token = r.quoted()?;
        r.expect_end("the test name")?;
        if !token.text.trim().is_empty() {
            return Ok(token.text);
        }
    } else if let Some((name, _)) = r.rest_free_text() {
        return Ok(name.to_owned());
    }
    Err(SyntaxError::new(
        ErrorKind::MissingArgument,
        "missing the test name",
        Span::new(keyword_span.line, keyword_span.column + keyword_span.len, 1),
    )
    .with_hint("usage: test \"what it checks\""))
}

fn send(r: &mut LineReader) -> Result<Command, SyntaxError> {
    let route = required_template(r, "the route", "send")?;
    let payload = payload(r)?;
    Ok(Command::Send { route, payload })
}

fn connection_id(r: &mut LineReader, keyword: &str) -> Result<Template, SyntaxError> {
    required_template(r, "the connection id", keyword)
}

/// A payload: JSON if it starts with `{`, `[` or `"` (then it must be valid) or if the
/// rest of the line is a JSON number, `true`, `false` or `null`; otherwise the rest of
/// the line as text.
fn payload(r: &mut LineReader) -> Result<Option<Payload>, SyntaxError> {
    r.skip_spaces();
    if r.at_end() {
        return Ok(None);
    }
    let start = r.pos();
    let rest = r.remaining();
    let line = r.line();
    let column = r.column_at(start);
    if rest.starts_with(['{', '[', '"']) {
        let (json, used) = JsonTemplate::parse_prefix(rest, line, column)?;
        r.advance(used);
        r.expect_end("the JSON payload")?;
        return Ok(Some(Payload::Json(json)));
    }
    let whole_line_json = if rest.contains("${") {
        None
    } else {
        JsonTemplate::parse_prefix(rest, line, column)
            .ok()
            .filter(|&(_, used)| {
                LineReader::starting_at(r.text(), line, start + used)
                    .expect_end("")
                    .is_ok()
            })
    };
    if let Some((json, used)) = whole_line_json {
        r.advance(used);
        return Ok(Some(Payload::Json(json)));
    }
    let (text, at) = r.rest_free_text().unwrap_or(("", start));
    Ok(Some(Payload::Text(Template::parse(
        text,
        line,
        r.column_at(at),
    )?)))
}

fn binary_data(r: &mut LineReader, keyword: &str) -> Result<Option<Vec<u8>>, SyntaxError> {
    let mut data = String::new();
    let mut first: Option<Span> = None;
    let mut last: Option<Span> = None;
    // In `expect binary`, a `within` ends the data.
    while r
        .peek_word()
        .is_some_and(|word| word != "within" || keyword != "expect binary")
    {
        let Some((word, span)) = r.word() else { break };
        data.push_str(word);
        first.get_or_insert(span);
        last = Some(span);
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    let span = first.to(last);
    if let Some(encoded) = data.strip_prefix("base64:") {
        let engine = base64::engine::general_purpose::STANDARD;
        let lenient = base64::engine::general_purpose::STANDARD_NO_PAD;
        return engine
            .decode(encoded)
            .or_else(|_| lenient.decode(encoded))
            .map(Some)
            .map_err(|error| {
                SyntaxError::new(
                    ErrorKind::BadBinary,
                    format!("invalid base64: {error}"),
                    span,
                )
            });
    }
    decode_hex(&data).map(Some).map_err(|message| {
        SyntaxError::new(ErrorKind::BadBinary, message, span).with_hint(format!(
            "write hex digits (`{keyword} 48656c6c6f`) or `base64:SGVsbG8=`"
        ))
    })
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("invalid hex: `{bad}` is not a hex digit"));
    }
    if !text.len().is_multiple_of(2) {
        return Err("invalid hex: an odd number of digits".to_owned());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// The optional payload of `ping` or `pong`: the rest of the line, at most 125 bytes.
fn control_data(r: &mut LineReader, what: &str) -> Result<Option<Template>, SyntaxError> {
    let Some((rest, at)) = r.rest_free_text() else {
        return Ok(None);
    };
    let data = Template::parse(rest, r.line(), r.column_at(at))?;
    check_control_len(&data, 125, what)?;
    Ok(Some(data))
}

fn check_control_len(template: &Template, max: usize, what: &str) -> Result<(), SyntaxError> {
    match template.as_literal() {
        Some(text) if text.len() > max => Err(SyntaxError::new(
            ErrorKind::TooLong,
            format!("{what} can be at most {max} bytes; this is {}", text.len()),
            template.span,
        )),
        _ => Ok(()),
    }
}

/// Codes a client may send in a close frame (RFC 6455 §7.4, IANA registry).
pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn close(r: &mut LineReader) -> Result<Command, SyntaxError> {
    let Some((word, span)) = r.word() else {
        return Ok(Command::Close {
            code: None,
            reason: None,
        });
    };
    let code = match word.parse::<u16>() {
        Ok(code) if is_sendable_close_code(code) => code,
        _ => {
            return Err(SyntaxError::new(
                ErrorKind::BadCloseCode,
                format!("`{word}` is not a close code a client may send"),
                span,
            )
            .with_hint("use 1000 (normal closure), 1001-1003, 1007-1014, or 3000-4999 for an application code"));
        }
    };
    let reason = match r.rest_free_text() {
        None => None,
        Some((rest, at)) => {
            let reason = Template::parse(rest, r.line(), r.column_at(at))?;
            check_control_len(&reason, 123, "a close reason")?;
            Some(reason)
        }
    };
    Ok(Command::Close {
        code: Some(Spanned::new(code, span)),
        reason,
    })
}

#[allow(clippy::large_enum_variant)]
enum Expected {
    Command(Expect),
    Refused(ExpectRefused),
}

fn http_status(word: &str, span: Span) -> Result<Spanned<u16>, SyntaxError> {
    match word.parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(Spanned::new(code, span)),
        _ => Err(SyntaxError::new(
            ErrorKind::BadStatus,
            format!("`{word}` is not an HTTP status"),
            span,
        )
        .with_hint("an HTTP status is a number from 100 to 599, e.g. `403`")),
    }
}

fn expect(r: &mut LineReader, keyword_span: Span) -> Result<Expected, SyntaxError> {
    let next = if r.peek_word() == Some("next") {
        r.word();
        true
    } else {
        false
    };
    let Some((word, word_span)) = r.word() else {
        return Err(missing(r, "what to expect", usage_of("expect")));
    };
    let no_next = |what: &str| -> Result<(), SyntaxError> {
        if next {
            Err(SyntaxError::new(
                ErrorKind::UnexpectedArgument,
                format!("`next` does not apply to `expect {what}`"),
                word_span,
            ))
        } else {
            Ok(())
        }
    };
    let expectation = match word {
        "connect-refused" => {
            no_next(word)?;
            let status = match r.word() {
                Some((status, span)) => Some(http_status(status, span)?),
                None => None,
            };
            r.expect_end("the HTTP status")?;
            let end = r.pos();
            return Ok(Expected::Refused(ExpectRefused {
                status,
                span: keyword_span.to(Span::new(r.line(), r.column_at(end), 0)),
            }));
        }
        "nothing" => {
            no_next(word)?;
            Expectation::Nothing
        }
        "status" => {
            no_next(word)?;
            let (status, span) = r
                .word()
                .ok_or_else(|| missing(r, "the HTTP status", "expect status CODE"))?;
            let status = http_status(status, span)?;
            r.expect_end("the HTTP status")?;
            return Ok(Expected::Command(Expect {
                next: false,
                expectation: Expectation::Status(status),
                within: None,
            }));
        }
        "response" => {
            no_next(word)?;
            let (matcher_word, matcher_span) = r
                .word()
                .ok_or_else(|| missing(r, "a matcher", "expect response MATCHER"))?;
            let matcher = matcher(r, matcher_word, matcher_span)?;
            r.expect_end("the matcher")?;
            return Ok(Expected::Command(Expect {
                next: false,
                expectation: Expectation::Response(matcher),
                within: None,
            }));
        }
        _ => Expectation::Message(matcher(r, word, word_span)?),
    };
    let within = within(r)?;
    r.expect_end(if within.is_some() {
        "the duration"
    } else {
        "the expectation"
    })?;
    Ok(Expected::Command(Expect {
        next,
        expectation,
        within,
    }))
}

/// Parses a matcher whose keyword (`json`, `text`, …) has been read.
fn matcher(
    r: &mut LineReader,
    word: &str,
    word_span: Span,
) -> Result<Spanned<Matcher>, SyntaxError> {
    let line = r.line();
    let matcher = match word {
        "echo" => Matcher::Echo,
        "any" => Matcher::Any,
        "json" => {
            r.skip_spaces();
            let rest = r.remaining();
            if rest.starts_with('$') && !rest.starts_with("${") {
                let path = json_path(r)?;
                let predicate = predicate(r, &path)?;
                Matcher::JsonPath { path, predicate }
            } else {
                Matcher::Json(json_value(
                    r,
                    "the JSON value to expect",
                    "expect json VALUE | expect json PATH OP VALUE",
                )?)
            }
        }
        "json-subset" => Matcher::JsonSubset(json_value(
            r,
            "the JSON value to expect",
            "expect json-subset VALUE",
        )?),
        "text" => match r.peek_word() {
            Some("matches") => {
                r.word();
                Matcher::Text(TextPredicate::Matches(regex(r)?))
            }
            Some("contains") => {
                r.word();
                Matcher::Text(TextPredicate::Contains(text_value(r)?))
            }
            _ => Matcher::Text(TextPredicate::Equals(text_value(r)?)),
        },
        "binary" => {
            let data = binary_data(r, "expect binary")?.ok_or_else(|| {
                missing(r, "the bytes to expect", "expect binary HEX|base64:DATA")
            })?;
            Matcher::Binary(data)
        }
        "pong" => {
            let data = if matches!(r.peek_word(), None | Some("within")) {
                None
            } else {
                r.token()?
                    .map(|token| template_of(&token, line))
                    .transpose()?
            };
            Matcher::Pong(data)
        }
        "closed" => {
            let word = if matches!(r.peek_word(), None | Some("within")) {
                None
            } else {
                r.word()
            };
            let code = match word {
                None => None,
                Some((code, span)) => match code.parse::<u16>() {
                    Ok(n) if (1000..=4999).contains(&n) => Some(Spanned::new(n, span)),
                    _ => {
                        return Err(SyntaxError::new(
                            ErrorKind::BadCloseCode,
                            format!("`{code}` is not a close code"),
                            span,
                        )
                        .with_hint(
                            "close codes are numbers from 1000 to 4999, e.g. `1000` or `1001`",
                        ));
                    }
                },
            };
            Matcher::Closed(code)
        }
        other => {
            let error = SyntaxError::new(
                ErrorKind::UnexpectedArgument,
                format!("unknown expectation `{other}`"),
                word_span,
            );
            return Err(match did_you_mean(other, EXPECT_WORDS.iter().copied()) {
                Some(suggestion) => error.with_hint(format!("did you mean `{suggestion}`?")),
                None => error.with_hint(format!(
                    "expect one of {}",
                    MATCHER_NAMES
                        .iter()
                        .chain(["nothing", "status", "response", "connect-refused"].iter())
                        .map(|w| format!("`{w}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
    };
    let end = r.pos();
    let span = word_span.to(Span::new(line, r.column_at(end), 0));
    Ok(Spanned::new(matcher, span))
}

fn json_path(r: &mut LineReader) -> Result<JsonPathExpr, SyntaxError> {
    let (source, span) = r
        .path_token()
        .ok_or_else(|| missing(r, "a JSON path", "expect json PATH OP VALUE"))?;
    let path = JsonPath::parse(source).map_err(|error| {
        // The position is a 0-based byte offset into the path; point at that character.
        let mut byte = error.position().min(source.len());
        while !source.is_char_boundary(byte) {
            byte -= 1;
        }
        let offset = source[..byte]
            .chars()
            .count()
            .min(span.len.saturating_sub(1));
        let message = match error.message() {
            // serde_json_path's catch-all says nothing the caret does not.
            "parser error" => "invalid JSON path".to_owned(),
            detail => format!("invalid JSON path: {detail}"),
        };
        let at = source[byte..].chars().next();
        let glued = source[..byte]
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace());
        let hint = if glued && matches!(at, Some('=' | '!' | '<' | '>')) {
            "put spaces around the comparison: `$.a == 1`"
        } else {
            "JSON paths follow RFC 9535, e.g. `$.message`, `$.items[0].id`, `$['a b']`"
        };
        SyntaxError::new(
            ErrorKind::BadJsonPath,
            message,
            Span::new(span.line, span.column + offset, 1),
        )
        .with_hint(hint)
    })?;
    Ok(JsonPathExpr {
        source: source.to_owned(),
        path,
    })
}

fn predicate(r: &mut LineReader, path: &JsonPathExpr) -> Result<Predicate, SyntaxError> {
    const USAGE: &str = "expect json PATH (== | != | < | > | <= | >=) VALUE, or PATH contains VALUE, PATH matches REGEX, PATH exists, PATH not exists";
    let Some((word, span)) = r.word() else {
        return Err(SyntaxError::new(
            ErrorKind::MissingArgument,
            format!("missing a comparison after `{path}`"),
            r.end_span(),
        )
        .with_hint("write `== VALUE`, `!= VALUE`, `< VALUE`, `contains VALUE`, `matches REGEX`, `exists` or `not exists`"));
    };
    let op = match word {
        "==" => Some(CompareOp::Eq),
        "!=" => Some(CompareOp::Ne),
        "<" => Some(CompareOp::Lt),
        ">" => Some(CompareOp::Gt),
        "<=" => Some(CompareOp::Le),
        ">=" => Some(CompareOp::Ge),
        _ => None,
    };
    if let Some(op) = op {
        let value = json_value(r, &format!("the value after `{word}`"), USAGE)?;
        return Ok(Predicate::Compare { op, value });
    }
    match word {
        "contains" => Ok(Predicate::Contains(json_value(
            r,
            "the value after `contains`",
            USAGE,
        )?)),
        "matches" => Ok(Predicate::Matches(regex(r)?)),
        "exists" => Ok(Predicate::Exists),
        "not" => match r.word() {
            Some(("exists", _)) => Ok(Predicate::NotExists),
            Some((_, span)) => Err(SyntaxError::new(
                ErrorKind::UnexpectedArgument,
                "expected `exists` after `not`",
                span,
            )),
            None => Err(missing(r, "`exists` after `not`", USAGE)),
        },
        _ => {
            let error = SyntaxError::new(
                ErrorKind::UnexpectedArgument,
                format!("expected a comparison, found `{word}`"),
                span,
            );
            let words = [
                "==", "!=", "<", ">", "<=", ">=", "contains", "matches", "exists", "not",
            ];
            Err(match did_you_mean(word, words) {
                Some(suggestion) if suggestion.len() > 2 => {
                    error.with_hint(format!("did you mean `{suggestion}`?"))
                }
                _ => error.with_hint("write `== VALUE`, `!= VALUE`, `< VALUE`, `contains VALUE`, `matches REGEX`, `exists` or `not exists`"),
            })
        }
    }
}

/// A JSON value (with variables) at the reader; a bare word gets a "quote it" hint.
fn json_value(r: &mut LineReader, what: &str, usage: &str) -> Result<JsonTemplate, SyntaxError> {
    r.skip_spaces();
    if r.at_end() {
        return Err(missing(r, what, usage));
    }
    let start = r.pos();
    let rest = r.remaining();
    match JsonTemplate::parse_prefix(rest, r.line(), r.column_at(start)) {
        Ok((json, used)) => {
            r.advance(used);
            Ok(json)
        }
        // A bare word: most likely a string without its quotes.
        Err(_) if rest.starts_with(|c: char| c.is_alphabetic() || c == '_') => {
            let word = r.peek_word().unwrap_or_default();
            Err(SyntaxError::new(
                ErrorKind::BadJson,
                format!("expected a JSON value, found `{word}`"),
                r.span(start, start + word.len()),
            )
            .with_hint(format!(
                "JSON strings are quoted: `\"{}\"`",
                word.replace('"', "\\\"")
            )))
        }
        Err(error) => Err(error),
    }
}

/// The expected text of `expect text`: a word or a `"…"` string.
fn text_value(r: &mut LineReader) -> Result<Template, SyntaxError> {
    if r.peek_word() == Some("within") {
        return Err(missing(
            r,
            "the text to expect",
            "expect text VALUE | text contains VALUE | text matches REGEX (quote text with spaces: \"a b\")",
        ));
    }
    let token = r.token()?.ok_or_else(|| {
        missing(
            r,
            "the text to expect",
            "expect text VALUE | text contains VALUE | text matches REGEX (quote text with spaces: \"a b\")",
        )
    })?;
    template_of(&token, r.line())
}

fn regex(r: &mut LineReader) -> Result<RegexExpr, SyntaxError> {
    let token = r.regex_token()?.ok_or_else(|| {
        missing(
            r,
            "a regex",
            "… matches REGEX, where REGEX is a word, /a regex/ or \"a regex\"",
        )
    })?;
    let regex = regex::Regex::new(&token.text).map_err(|error| {
        // The last line of regex's message says what is wrong; we draw our own caret.
        let message = error.to_string();
        let reason = message
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("")
            .trim()
            .trim_start_matches("error: ")
            .to_owned();
        SyntaxError::new(
            ErrorKind::BadRegex,
            format!("invalid regex: {reason}"),
            token.span,
        )
    })?;
    Ok(RegexExpr {
        source: token.text,
        regex,
    })
}

fn capture(r: &mut LineReader) -> Result<Capture, SyntaxError> {
    const USAGE: &str = "capture NAME = json PATH | capture NAME = regex REGEX";
    let next = if r.peek_word() == Some("next") {
        r.word();
        true
    } else {
        false
    };
    let (name, name_span) = r
        .word()
        .ok_or_else(|| missing(r, "the variable name", USAGE))?;
    let (name, equals_attached) = match name.split_once('=') {
        Some((name, "")) => (name, true),
        _ => (name, false),
    };
    if !is_variable_name(name) {
        return Err(SyntaxError::new(
            ErrorKind::BadName,
            format!("`{name}` is not a variable name"),
            Span::new(
                name_span.line,
                name_span.column,
                name.chars().count().max(1),
            ),
        )
        .with_hint("names are letters, digits and `_`, not starting with a digit"));
    }
    let name = Spanned::new(
        name.to_owned(),
        Span::new(name_span.line, name_span.column, name.chars().count()),
    );
    if !equals_attached {
        match r.word() {
            Some(("=", _)) => {}
            Some((other, span)) => {
                return Err(SyntaxError::new(
                    ErrorKind::UnexpectedArgument,
                    format!("expected `=`, found `{other}`"),
                    span,
                )
                .with_hint(format!("usage: {USAGE}")));
            }
            None => return Err(missing(r, "`=` and where the value comes from", USAGE)),
        }
    }
    let (source_word, source_span) = r
        .word()
        .ok_or_else(|| missing(r, "where the value comes from", USAGE))?;
    let source = match source_word {
        "json" => CaptureSource::Json(json_path(r)?),
        "regex" => CaptureSource::Regex(regex(r)?),
        other => {
            let error = SyntaxError::new(
                ErrorKind::UnexpectedArgument,
                format!("expected `json` or `regex`, found `{other}`"),
                source_span,
            );
            return Err(match did_you_mean(other, ["json", "regex"]) {
                Some(suggestion) => error.with_hint(format!("did you mean `{suggestion}`?")),
                None => error.with_hint(format!("usage: {USAGE}")),
            });
        }
    };
    let end = r.pos();
    let source = Spanned::new(
        source,
        source_span.to(Span::new(r.line(), r.column_at(end), 0)),
    );
    let within = within(r)?;
    r.expect_end(if within.is_some() {
        "the duration"
    } else {
        "the capture"
    })?;
    Ok(Capture {
        next,
        name,
        source,
        within,
    })
}

#[cfg(test)]
mod tests {
    use super::super::assemble::parse_script;
    use super::*;
    use serde_json::json;

    fn script(source: &str) -> Script {
        match parse_script(source, "dir/echo.wsp") {
            Ok(script) => script,
            Err(errors) => panic!("{}", errors.render(false)),
        }
    }

    /// The commands of a script that opens a connection first (dropped from the result).
    fn commands(lines: &str) -> Vec<Command> {
        let source = format!("connect\n{lines}");
        script(&source)
            .statements()
            .skip(1)
            .map(|s| s.command.clone())
            .collect()
    }

    fn one(line: &str) -> Command {
        let mut all = commands(line);
        assert_eq!(all.len(), 1, "{line}");
        all.remove(0)
    }

    fn error_kind(source: &str) -> ErrorKind {
        match parse_script(source, "t.wsp") {
            Ok(_) => panic!("no error in {source:?}"),
            Err(errors) => errors.errors[0].kind,
        }
    }

    fn literal_json(payload: &Option<Payload>) -> serde_json::Value {
        match payload {
            Some(Payload::Json(json)) => json.literal.clone().expect("a literal"),
            other => panic!("not JSON: {other:?}"),
        }
    }

    fn text_payload(payload: &Option<Payload>) -> String {
        match payload {
            Some(Payload::Text(text)) => text.source.clone(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn connect_forms() {
        let connects: Vec<Connect> = script(
            "connect\nconnect alice\nconnect ${WS_URL}\nconnect bob ws://127.0.0.1:1/dev\nconnect \"ws://q\"",
        )
        .statements()
        .map(|s| match &s.command {
            Command::Connect(c) => c.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
        let name = |c: &Connect| c.name.as_ref().map(|n| n.value.clone());
        let url = |c: &Connect| c.url.as_ref().map(|u| u.source.clone());
        assert_eq!((name(&connects[0]), url(&connects[0])), (None, None));
        assert_eq!(
            (name(&connects[1]), url(&connects[1])),
            (Some("alice".into()), None)
        );
        assert_eq!(
            (name(&connects[2]), url(&connects[2])),
            (None, Some("${WS_URL}".into()))
        );
        assert_eq!(
            (name(&connects[3]), url(&connects[3])),
            (Some("bob".into()), Some("ws://127.0.0.1:1/dev".into()))
        );
        assert_eq!(url(&connects[4]), Some("ws://q".into()));
    }

    #[test]
    fn keepalive_and_reconnect_lines() {
        match one("keepalive 30s") {
            Command::KeepAlive(KeepAliveCommand::Every { every, text: None }) => {
                assert_eq!(every.value, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        match one(r#"keepalive 5m {"action":"ping"}"#) {
            Command::KeepAlive(KeepAliveCommand::Every {
                text: Some(text), ..
            }) => {
                assert_eq!(text.source, r#"{"action":"ping"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("keepalive off"),
            Command::KeepAlive(KeepAliveCommand::Off)
        ));
        assert!(matches!(
            one("keepalive"),
            Command::KeepAlive(KeepAliveCommand::Show)
        ));
        assert_eq!(
            error_kind("connect ws://h\nkeepalive 0s\n"),
            ErrorKind::BadDuration
        );
        assert_eq!(
            error_kind("connect ws://h\nkeepalive soon\n"),
            ErrorKind::BadDuration
        );
        assert_eq!(
            error_kind("connect ws://h\n  reconnect max 0\n"),
            ErrorKind::UnexpectedArgument
        );
        assert_eq!(
            error_kind("connect ws://h\n  reconnect sometimes\n"),
            ErrorKind::UnexpectedArgument
        );
        let rendered = parse_script("connect ws://h\n  reconnect max lots\n", "s.wsp")
            .expect_err("max needs a number")
            .render(false);
        assert!(rendered.contains("s.wsp:2:17"), "{rendered}");
        assert!(rendered.contains("^^^^"), "{rendered}");
    }

    #[test]
    fn connect_options_and_refusal_attach_to_their_connect() {
        let s = script(
            "connect ${URL}\n  auth Bearer ${TOKEN}\n  # a comment\n\n  api-key k1 \n    header X-Trace: a b\n  subprotocol chat\n  origin https://o\n  reconnect always max 3\nexpect connect-refused 403\nconnect\n",
        );
        let statements: Vec<&Statement> = s.statements().collect();
        assert_eq!(statements.len(), 2);
        let Command::Connect(connect) = &statements[0].command else {
            panic!()
        };
        let options: Vec<String> = connect
            .options
            .iter()
            .map(|o| match &o.value {
                ConnectOption::Auth(t) => format!("auth={}", t.0.source),
                ConnectOption::ApiKey(t) => format!("api-key={}", t.0.source),
                ConnectOption::Header { name, value } => format!("{name}={}", value.source),
                ConnectOption::Subprotocol(t) => format!("subprotocol={}", t.source),
                ConnectOption::Origin(t) => format!("origin={}", t.source),
                ConnectOption::Reconnect { always, max } => {
                    format!("reconnect={always},{:?}", max.as_ref().map(|m| m.value))
                }
            })
            .collect();
        assert_eq!(
            options,
            [
                "auth=Bearer ${TOKEN}",
                "api-key=k1",
                "X-Trace=a b",
                "subprotocol=chat",
                "origin=https://o",
                "reconnect=true,Some(3)"
            ]
        );
        let refused = connect.expect_refused.as_ref().expect("refusal attached");
        assert_eq!(refused.status.as_ref().map(|s| s.value), Some(403));
        assert_eq!(refused.span, Span::new(10, 1, 26));
        // The secret's text is not in the Debug output.
        assert!(!format!("{connect:?}").contains("TOKEN"));
    }

    #[test]
    fn send_payloads() {
        let payload = |line: &str| match one(line) {
            Command::Send { payload, .. } => payload,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            literal_json(&payload(r#"send send "Hello World!""#)),
            json!("Hello World!")
        );
        assert_eq!(
            literal_json(&payload(r#"send sendmessage {"data": "hi"} # c"#)),
            json!({"data": "hi"})
        );
        assert_eq!(literal_json(&payload("send n 42 # c")), json!(42));
        assert_eq!(
            text_payload(&payload("send send Hello World!")),
            "Hello World!"
        );
        assert_eq!(text_payload(&payload("send send true story")), "true story");
        assert_eq!(text_payload(&payload("send send a # b")), "a # b");
        assert_eq!(text_payload(&payload("send send ${BODY}")), "${BODY}");
        assert!(payload("send ping").is_none());
        match payload(r#"send s {"n": ${N}}"#) {
            Some(Payload::Json(json)) => assert_eq!(json.in_string, vec![false]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_is_verbatim() {
        match one("text  a # b ") {
            Command::Text(t) => assert_eq!(t.as_literal(), Some(" a # b ")),
            other => panic!("{other:?}"),
        }
        match one("text #1") {
            Command::Text(t) => assert_eq!(t.as_literal(), Some("#1")),
            other => panic!("{other:?}"),
        }
        match one("text") {
            Command::Text(t) => assert_eq!(t.as_literal(), Some("")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn binary_ping_close() {
        assert!(matches!(one("binary 48 65 6c6c6f"), Command::Binary(b) if b == b"Hello"));
        assert!(matches!(one("binary base64:SGVsbG8="), Command::Binary(b) if b == b"Hello"));
        assert!(matches!(one("binary base64:SGVsbG8"), Command::Binary(b) if b == b"Hello"));
        assert!(matches!(one("ping"), Command::Ping(None)));
        assert!(matches!(one("ping  # keepalive"), Command::Ping(None)));
        assert!(matches!(
            one("close 1000 # done"),
            Command::Close { reason: None, .. }
        ));
        assert!(matches!(one("ping hi there"), Command::Ping(Some(t)) if t.source == "hi there"));
        assert!(matches!(one("pong"), Command::Pong(None)));
        assert!(matches!(one("pong beat"), Command::Pong(Some(t)) if t.source == "beat"));
        match one("close 4000 going away now") {
            Command::Close { code, reason } => {
                assert_eq!(code.map(|c| c.value), Some(4000));
                assert_eq!(reason.map(|r| r.source), Some("going away now".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("close"),
            Command::Close {
                code: None,
                reason: None
            }
        ));
        assert_eq!(
            error_kind(&format!("connect\nping {}", "x".repeat(126))),
            ErrorKind::TooLong
        );
        assert_eq!(error_kind("connect\nclose 1006"), ErrorKind::BadCloseCode);
        assert_eq!(error_kind("connect\nclose 2999"), ErrorKind::BadCloseCode);
    }

    fn expect_of(line: &str) -> Expect {
        match one(line) {
            Command::Expect(expect) => expect,
            other => panic!("{other:?}"),
        }
    }

    fn matcher_of(line: &str) -> Matcher {
        match expect_of(line).expectation {
            Expectation::Message(m) | Expectation::Response(m) => m.value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expectations() {
        let e = expect_of("expect echo within 2s");
        assert!(!e.next);
        assert_eq!(e.within.map(|w| w.value), Some(Duration::from_secs(2)));
        assert!(
            matches!(e.expectation, Expectation::Message(ref m) if matches!(m.value, Matcher::Echo))
        );

        let e = expect_of("expect next json $.x exists");
        assert!(e.next);
        assert!(matches!(
            e.expectation,
            Expectation::Message(Spanned {
                value: Matcher::JsonPath {
                    predicate: Predicate::Exists,
                    ..
                },
                ..
            })
        ));

        let e = expect_of("expect nothing within 300ms");
        assert!(matches!(e.expectation, Expectation::Nothing));
        assert_eq!(e.within.map(|w| w.value), Some(Duration::from_millis(300)));

        assert!(matches!(
            expect_of("expect status 200").expectation,
            Expectation::Status(Spanned { value: 200, .. })
        ));
        assert!(matches!(
            matcher_of("expect response json $.connectedAt exists"),
            Matcher::JsonPath { .. }
        ));
    }

    #[test]
    fn matchers_read_back_as_written() {
        for line in [
            "json $.message == \"Forbidden\"",
            "json $.n != 3",
            "json $.n <= 3.5",
            "json $[?@.a == 'x y'].b contains \"z\"",
            "json $.s matches ^a.*$",
            "json $.s matches /a b/",
            "json $.gone not exists",
            "json {\"a\": 1}",
            "json-subset {\"a\": [1]}",
            "json ${EXPECTED}",
            "text hello",
            "text \"hello world\"",
            "text contains ell",
            "text matches ^h.*o$",
            "binary 48656c6c6f",
            "pong",
            "pong hi",
            "closed",
            "closed 1000",
            "any",
            "echo",
        ] {
            let matcher = matcher_of(&format!("expect {line} within 1s"));
            assert_eq!(matcher.describe(), line);
        }
    }

    #[test]
    fn matcher_spans_cover_the_matcher() {
        let s = script("connect\nexpect next json $.a == 1 within 2s # c");
        let Some(Statement {
            command: Command::Expect(expect),
            span,
            ..
        }) = s.statements().nth(1)
        else {
            panic!()
        };
        let Expectation::Message(matcher) = &expect.expectation else {
            panic!()
        };
        assert_eq!(matcher.span, Span::new(2, 13, 13));
        assert_eq!(*span, Span::new(2, 1, 35));
    }

    #[test]
    fn captures() {
        match one("capture conn = json $.connectionId within 2s") {
            Command::Capture(c) => {
                assert_eq!(c.name.value, "conn");
                assert_eq!(c.name.span, Span::new(2, 9, 4));
                assert_eq!(c.source.value.to_string(), "json $.connectionId");
                assert_eq!(c.within.map(|w| w.value), Some(Duration::from_secs(2)));
                assert!(!c.next);
            }
            other => panic!("{other:?}"),
        }
        match one("capture next id= regex /id=(\\w+)/") {
            Command::Capture(c) => {
                assert!(c.next);
                assert_eq!(c.name.value, "id");
                assert_eq!(c.source.value.to_string(), "regex id=(\\w+)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_commands() {
        assert!(
            matches!(one("sleep 500ms"), Command::Sleep(d) if d.value == Duration::from_millis(500))
        );
        assert!(matches!(one("wait 2s"), Command::Sleep(d) if d.value == Duration::from_secs(2)));
        assert!(matches!(one("echo full"), Command::Echo(p) if p.value == EchoPolicy::Full));
        assert!(
            matches!(one("get ${conn}"), Command::Get { connection_id } if connection_id.source == "${conn}")
        );
        assert!(matches!(one("delete abc="), Command::Delete { .. }));
        match one("post ${conn} {\"push\": 1}") {
            Command::Post {
                connection_id,
                payload,
            } => {
                assert_eq!(connection_id.source, "${conn}");
                assert_eq!(literal_json(&payload), json!({"push": 1}));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tests_group_commands() {
        let s = script(
            "# header comment\nconnect\n\ntest \"first one\"\n  send send a\ntest second # not a comment\nsend send b\n",
        );
        let names: Vec<(&str, bool, usize)> = s
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.implicit, t.statements.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("echo", true, 1),
                ("first one", false, 1),
                ("second # not a comment", false, 1)
            ]
        );
        assert_eq!(s.tests[1].span, Span::new(4, 1, 4));

        let s = script("test only\nconnect\n");
        assert_eq!(s.tests.len(), 1, "an empty preamble adds no test");
    }

    #[test]
    fn targets() {
        let s = script(
            "connect alice\nconnect bob\n@alice send send hi\n@bob expect json $.data == \"hi\"",
        );
        let targets: Vec<Option<String>> = s
            .statements()
            .map(|s| s.target.as_ref().map(|t| t.value.clone()))
            .collect();
        assert_eq!(
            targets,
            [None, None, Some("alice".into()), Some("bob".into())]
        );
        assert_eq!(
            error_kind("connect alice\n@bob ping"),
            ErrorKind::UnknownConnection
        );
        assert_eq!(
            error_kind("@bob ping\nconnect bob"),
            ErrorKind::UnknownConnection
        );
        assert_eq!(error_kind("ping"), ErrorKind::NoConnection);
        assert_eq!(error_kind("connect a\n@a sleep 1s"), ErrorKind::Misplaced);
        assert_eq!(
            error_kind("connect a\n@a expect status 200"),
            ErrorKind::Misplaced
        );
    }

    #[test]
    fn misplaced_lines() {
        assert_eq!(
            error_kind("connect\nsend a\nexpect connect-refused"),
            ErrorKind::Misplaced
        );
        assert_eq!(
            error_kind("connect\n  send a\nauth x"),
            ErrorKind::OptionWithoutConnect
        );
        assert_eq!(
            error_kind("  connect\n  auth x"),
            ErrorKind::OptionWithoutConnect
        );
        assert_eq!(error_kind("connect\nhelp"), ErrorKind::ReplOnly);
        assert_eq!(
            error_kind("connect\nexpect next nothing"),
            ErrorKind::UnexpectedArgument
        );
    }

    #[test]
    fn an_operator_glued_to_the_path_gets_a_hint() {
        let errors = parse_script("connect\nexpect json $.a==1", "t")
            .unwrap_err()
            .errors;
        assert_eq!(errors[0].kind, ErrorKind::BadJsonPath);
        assert_eq!(errors[0].span, Span::new(2, 16, 1));
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("put spaces around the comparison: `$.a == 1`")
        );
    }

    #[test]
    fn a_broken_connect_does_not_cascade() {
        let errors = parse_script("connect alice ws://x extra\n  auth x\n@alice ping\n", "t")
            .unwrap_err()
            .errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn repl_lines() {
        assert!(matches!(parse_repl_line(""), Ok(ReplInput::Empty)));
        assert!(matches!(parse_repl_line("  "), Ok(ReplInput::Text(t)) if t == "  "));
        assert!(matches!(parse_repl_line("hi there"), Ok(ReplInput::Text(t)) if t == "hi there"));
        assert!(matches!(parse_repl_line("//x y"), Ok(ReplInput::Text(t)) if t == "/x y"));
        let Ok(ReplInput::Command(statement)) = parse_repl_line("/send send \"Hello World!\"")
        else {
            panic!()
        };
        assert_eq!(statement.keyword, Span::new(1, 2, 4));
        assert!(matches!(
            parse_repl_line("/pretty on"),
            Ok(ReplInput::Command(Statement {
                command: Command::Pretty(true),
                ..
            }))
        ));
        assert!(matches!(
            parse_repl_line("/help expect"),
            Ok(ReplInput::Command(Statement {
                command: Command::Help(Some(_)),
                ..
            }))
        ));
        assert!(matches!(
            parse_repl_line("/exit"),
            Ok(ReplInput::Command(Statement {
                command: Command::Quit,
                ..
            }))
        ));
        // The prompt has one connection and knows it: no `connect` is needed first.
        assert!(parse_repl_line("/ping").is_ok());
        assert!(parse_repl_line("/@other ping").is_ok());
        assert_eq!(
            parse_repl_line("/auth x").unwrap_err().kind,
            ErrorKind::ScriptOnly
        );
    }
}
