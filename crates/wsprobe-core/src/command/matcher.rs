//! Expectation matchers and captures, evaluated against received frames: pure logic, no
//! sockets. The runner adapts each received frame into a [`FrameView`], resolves the
//! matcher's variables once ([`Spanned<Matcher>::resolve`]), then checks frames with
//! [`ResolvedMatcher::check`] — scanning the inbox in arrival order for `expect`, or only
//! the next frame for `expect next`.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use super::ast::{
    CaptureSource, CompareOp, JsonPathExpr, Matcher, Predicate, RegexExpr, Spanned, TextPredicate,
};
use super::template::{ResolveError, Variables};

/// A received frame, as matchers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameView<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping frame (no matcher accepts one; listed so every frame can be shown).
    Ping(&'a [u8]),
    /// A pong frame.
    Pong(&'a [u8]),
    /// A close frame; `code` is `None` when the frame had no status (or the connection
    /// dropped without one).
    Close {
        /// The status code, if the frame had one.
        code: Option<u16>,
        /// The reason (empty if none).
        reason: &'a str,
    },
}

impl<'a> From<&'a crate::session::Frame> for FrameView<'a> {
    /// A received frame as matchers see it: the REPL and the script runner both use this.
    fn from(frame: &'a crate::session::Frame) -> Self {
        use crate::session::{Frame, NO_STATUS};
        match frame {
            Frame::Text(text) => FrameView::Text(text),
            Frame::Binary(data) => FrameView::Binary(data),
            Frame::Ping(data) => FrameView::Ping(data),
            Frame::Pong(data) => FrameView::Pong(data),
            Frame::Close { code, reason } => FrameView::Close {
                code: (*code != NO_STATUS).then_some(*code),
                reason,
            },
            Frame::Dropped { reason } => FrameView::Close { code: None, reason },
        }
    }
}

impl FrameView<'_> {
    /// Whether this is a data message (text or binary), which `expect nothing` counts.
    pub fn is_message(&self) -> bool {
        matches!(self, FrameView::Text(_) | FrameView::Binary(_))
    }
}

/// At most this many characters of a frame are shown in a failure message.
const SHOWN_CHARS: usize = 300;

/// A one-line description for failure messages: `text {"a":1}`, `binary 48656c (3 bytes)`,
/// `close 1000 bye`. Long payloads are cut with `…`.
impl fmt::Display for FrameView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameView::Text(text) => write!(f, "text {}", shorten(text)),
            FrameView::Binary(data) => write!(f, "binary {}", bytes_shown(data)),
            FrameView::Ping(data) => write!(f, "ping {}", bytes_shown(data)),
            FrameView::Pong(data) => write!(f, "pong {}", bytes_shown(data)),
            FrameView::Close {
                code: Some(code),
                reason,
            } if !reason.is_empty() => {
                write!(f, "close {code} {}", shorten(reason))
            }
            FrameView::Close {
                code: Some(code), ..
            } => write!(f, "close {code}"),
            FrameView::Close { code: None, .. } => f.write_str("close (no status code)"),
        }
    }
}

/// `text` cut at [`SHOWN_CHARS`], with control characters escaped (`\n`, `\x1b`) by
/// [`crate::text`]: it comes from the network, and goes on one line of a terminal, where a
/// newline would break the layout and an escape sequence could restyle or clear the screen.
fn shorten(text: &str) -> String {
    let cut = match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    };
    let mut shown = crate::text::one_line(cut);
    if cut.len() < text.len() {
        shown.push_str(&format!("… ({} bytes)", text.len()));
    }
    shown
}

fn bytes_shown(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) if !text.is_empty() && !text.chars().any(char::is_control) => {
            format!("{} ({} bytes)", shorten(text), data.len())
        }
        _ => {
            let hex: String = data.iter().take(64).map(|b| format!("{b:02x}")).collect();
            let more = if data.len() > 64 { "…" } else { "" };
            format!("{hex}{more} ({} bytes)", data.len())
        }
    }
}

/// A matcher with its variables filled in, ready to test frames.
#[derive(Clone, Debug)]
pub struct ResolvedMatcher {
    check: Check,
    description: String,
}

#[derive(Clone, Debug)]
enum Check {
    Echo(Value),
    Any,
    Json(Value),
    JsonSubset(Value),
    JsonPath {
        path: JsonPathExpr,
        predicate: ResolvedPredicate,
    },
    TextEquals(String),
    TextContains(String),
    TextMatches(RegexExpr),
    Binary(Vec<u8>),
    Pong(Option<Vec<u8>>),
    Closed(Option<u16>),
}

#[derive(Clone, Debug)]
enum ResolvedPredicate {
    Compare(CompareOp, Value),
    Contains(Value),
    Matches(RegexExpr),
    Exists,
    NotExists,
}

impl Spanned<Matcher> {
    /// Fills in the matcher's variables. `expected_echo` is the echo the last
    /// route-tagged send should produce under the echo policy (the runner computes it);
    /// `expect echo` without one is an error.
    pub fn resolve(
        &self,
        vars: &dyn Variables,
        expected_echo: Option<&Value>,
    ) -> Result<ResolvedMatcher, ResolveError> {
        let check = match &self.value {
            Matcher::Echo => Check::Echo(
                expected_echo
                    .cloned()
                    .ok_or(ResolveError::NoEcho { span: self.span })?,
            ),
            Matcher::Any => Check::Any,
            Matcher::Json(json) => Check::Json(json.resolve(vars)?),
            Matcher::JsonSubset(json) => Check::JsonSubset(json.resolve(vars)?),
            Matcher::JsonPath { path, predicate } => Check::JsonPath {
                path: path.clone(),
                predicate: match predicate {
                    Predicate::Compare { op, value } => {
                        ResolvedPredicate::Compare(*op, value.resolve(vars)?)
                    }
                    Predicate::Contains(value) => ResolvedPredicate::Contains(value.resolve(vars)?),
                    Predicate::Matches(regex) => ResolvedPredicate::Matches(regex.clone()),
                    Predicate::Exists => ResolvedPredicate::Exists,
                    Predicate::NotExists => ResolvedPredicate::NotExists,
                },
            },
            Matcher::Text(TextPredicate::Equals(text)) => Check::TextEquals(text.resolve(vars)?),
            Matcher::Text(TextPredicate::Contains(text)) => {
                Check::TextContains(text.resolve(vars)?)
            }
            Matcher::Text(TextPredicate::Matches(regex)) => Check::TextMatches(regex.clone()),
            Matcher::Binary(data) => Check::Binary(data.clone()),
            Matcher::Pong(data) => Check::Pong(match data {
                Some(data) => Some(data.resolve(vars)?.into_bytes()),
                None => None,
            }),
            Matcher::Closed(code) => Check::Closed(code.as_ref().map(|code| code.value)),
        };
        let description = check.describe();
        Ok(ResolvedMatcher { check, description })
    }
}

impl Matcher {
    /// The matcher as written, e.g. `json $.message == "Forbidden"` (variables shown as
    /// `${NAME}`), for messages that must not reveal variable values.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Echo => f.write_str("echo"),
            Matcher::Any => f.write_str("any"),
            Matcher::Json(json) => write!(f, "json {json}"),
            Matcher::JsonSubset(json) => write!(f, "json-subset {json}"),
            Matcher::JsonPath { path, predicate } => {
                write!(f, "json {path} ")?;
                match predicate {
                    Predicate::Compare { op, value } => write!(f, "{} {value}", op.as_str()),
                    Predicate::Contains(value) => write!(f, "contains {value}"),
                    Predicate::Matches(regex) => write!(f, "matches {regex}"),
                    Predicate::Exists => f.write_str("exists"),
                    Predicate::NotExists => f.write_str("not exists"),
                }
            }
            Matcher::Text(TextPredicate::Equals(text)) => {
                write!(f, "text {}", quote_if_needed(&text.source))
            }
            Matcher::Text(TextPredicate::Contains(text)) => {
                write!(f, "text contains {}", quote_if_needed(&text.source))
            }
            Matcher::Text(TextPredicate::Matches(regex)) => write!(f, "text matches {regex}"),
            Matcher::Binary(data) => write!(f, "binary {}", hex(data)),
            Matcher::Pong(None) => f.write_str("pong"),
            Matcher::Pong(Some(data)) => write!(f, "pong {}", quote_if_needed(&data.source)),
            Matcher::Closed(None) => f.write_str("closed"),
            Matcher::Closed(Some(code)) => write!(f, "closed {}", code.value),
        }
    }
}

/// A word as is; anything with spaces, quotes or nothing at all as a JSON string.
fn quote_if_needed(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.starts_with(['"', '#'])
        && !text.chars().any(char::is_whitespace)
        && !matches!(text, "matches" | "contains" | "within");
    if plain {
        text.to_owned()
    } else {
        Value::String(text.to_owned()).to_string()
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

impl Check {
    fn describe(&self) -> String {
        match self {
            Check::Echo(value) => format!("echo {value}"),
            Check::Any => "any".to_owned(),
            Check::Json(value) => format!("json {value}"),
            Check::JsonSubset(value) => format!("json-subset {value}"),
            Check::JsonPath { path, predicate } => match predicate {
                ResolvedPredicate::Compare(op, value) => {
                    format!("json {path} {} {value}", op.as_str())
                }
                ResolvedPredicate::Contains(value) => format!("json {path} contains {value}"),
                ResolvedPredicate::Matches(regex) => format!("json {path} matches {regex}"),
                ResolvedPredicate::Exists => format!("json {path} exists"),
                ResolvedPredicate::NotExists => format!("json {path} not exists"),
            },
            Check::TextEquals(text) => format!("text {}", quote_if_needed(text)),
            Check::TextContains(text) => format!("text contains {}", quote_if_needed(text)),
            Check::TextMatches(regex) => format!("text matches {regex}"),
            Check::Binary(data) => format!("binary {}", hex(data)),
            Check::Pong(None) => "pong".to_owned(),
            Check::Pong(Some(data)) => {
                format!("pong {}", quote_if_needed(&String::from_utf8_lossy(data)))
            }
            Check::Closed(None) => "closed".to_owned(),
            Check::Closed(Some(code)) => format!("closed {code}"),
        }
    }
}

impl ResolvedMatcher {
    /// What the matcher expects, with variables filled in (for failure messages).
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Whether `frame` satisfies the matcher.
    pub fn matches(&self, frame: &FrameView) -> bool {
        self.check(frame).is_ok()
    }

    /// `Ok` when `frame` satisfies the matcher; otherwise why not, in a few words (e.g.
    /// `$.message is "Internal"`), for `expect next` failures.
    pub fn check(&self, frame: &FrameView) -> Result<(), String> {
        match &self.check {
            Check::Any => {
                if frame.is_message() {
                    Ok(())
                } else {
                    Err(format!("a {} frame, not a message", frame_kind(frame)))
                }
            }
            // The one echo verdict (`message::echo_matches`), which the prompt's background
            // echo checks use too: a raw-text `Hello` is the echo of the body `"Hello"`.
            Check::Echo(expected) => {
                let text = text_of(frame)?;
                ensure(crate::message::echo_matches(expected, text), || {
                    format!(
                        "the message is {}, not the echo {expected}",
                        shorten(text.trim())
                    )
                })
            }
            Check::Json(expected) => {
                let actual = json_of(frame)?;
                ensure(json_equal(expected, &actual), || {
                    format!("the message is {actual}")
                })
            }
            Check::JsonSubset(expected) => {
                let actual = json_of(frame)?;
                ensure(json_subset(expected, &actual), || {
                    format!("the message is {actual}")
                })
            }
            Check::JsonPath { path, predicate } => {
                let actual = json_of(frame)?;
                check_path(path, predicate, &actual)
            }
            Check::TextEquals(expected) => {
                let text = text_of(frame)?;
                ensure(text == expected, || {
                    format!("the text is {}", quote_if_needed(text))
                })
            }
            Check::TextContains(expected) => {
                let text = text_of(frame)?;
                ensure(text.contains(expected.as_str()), || {
                    format!("the text is {}", quote_if_needed(text))
                })
            }
            Check::TextMatches(regex) => {
                let text = text_of(frame)?;
                ensure(regex.regex.is_match(text), || {
                    format!("the text is {}", quote_if_needed(text))
                })
            }
            Check::Binary(expected) => match frame {
                FrameView::Binary(data) => ensure(data == expected, || {
                    format!("the data is {}", bytes_shown(data))
                }),
                other => Err(format!("a {} frame, not binary", frame_kind(other))),
            },
            Check::Pong(expected) => match frame {
                FrameView::Pong(data) => match expected {
                    Some(expected) => ensure(data == expected, || {
                        format!("the pong carries {}", bytes_shown(data))
                    }),
                    None => Ok(()),
                },
                other => Err(format!("a {} frame, not a pong", frame_kind(other))),
            },
            Check::Closed(expected) => match frame {
                FrameView::Close { code, .. } => match (expected, code) {
                    (None, _) => Ok(()),
                    (Some(expected), Some(code)) => {
                        ensure(code == expected, || format!("closed with {code}"))
                    }
                    (Some(_), None) => Err("closed without a status code".to_owned()),
                },
                other => Err(format!("a {} frame, not a close", frame_kind(other))),
            },
        }
    }
}

fn ensure(ok: bool, why_not: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why_not()) }
}

fn frame_kind(frame: &FrameView) -> &'static str {
    match frame {
        FrameView::Text(_) => "text",
        FrameView::Binary(_) => "binary",
        FrameView::Ping(_) => "ping",
        FrameView::Pong(_) => "pong",
        FrameView::Close { .. } => "close",
    }
}

fn text_of<'a>(frame: &FrameView<'a>) -> Result<&'a str, String> {
    match frame {
        FrameView::Text(text) => Ok(text),
        other => Err(format!("a {} frame, not text", frame_kind(other))),
    }
}

fn json_of(frame: &FrameView) -> Result<Value, String> {
    let text = text_of(frame)?;
    serde_json::from_str(text).map_err(|_| format!("not JSON: {}", shorten(text)))
}

/// The value a path selects: one node as itself, several as an array of them.
fn select(path: &JsonPathExpr, value: &Value) -> Option<Value> {
    let nodes = path.path.query(value).all();
    match nodes.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => Some(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

fn check_path(
    path: &JsonPathExpr,
    predicate: &ResolvedPredicate,
    value: &Value,
) -> Result<(), String> {
    let selected = select(path, value);
    let Some(actual) = selected else {
        return match predicate {
            ResolvedPredicate::NotExists => Ok(()),
            _ => Err(format!("{path} selects nothing")),
        };
    };
    let is = || format!("{path} is {actual}");
    match predicate {
        ResolvedPredicate::Exists => Ok(()),
        ResolvedPredicate::NotExists => Err(is()),
        ResolvedPredicate::Compare(CompareOp::Eq, expected) => {
            ensure(json_equal(&actual, expected), is)
        }
        ResolvedPredicate::Compare(CompareOp::Ne, expected) => {
            ensure(!json_equal(&actual, expected), is)
        }
        ResolvedPredicate::Compare(op, expected) => match json_order(&actual, expected) {
            Some(ordering) => {
                let holds = match op {
                    CompareOp::Lt => ordering == Ordering::Less,
                    CompareOp::Gt => ordering == Ordering::Greater,
                    CompareOp::Le => ordering != Ordering::Greater,
                    CompareOp::Ge => ordering != Ordering::Less,
                    CompareOp::Eq | CompareOp::Ne => false,
                };
                ensure(holds, is)
            }
            None => Err(format!(
                "{}, which cannot be compared with {expected}",
                is()
            )),
        },
        ResolvedPredicate::Contains(expected) => ensure(json_contains(&actual, expected), is),
        ResolvedPredicate::Matches(regex) => match &actual {
            Value::String(text) => ensure(regex.regex.is_match(text), is),
            _ => Err(format!("{}, not a string", is())),
        },
    }
}

/// Semantic JSON equality: object key order does not matter, and numbers compare by
/// value (`1` equals `1.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => json_order(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, xv)| y.get(key).is_some_and(|yv| json_equal(xv, yv)))
        }
        _ => a == b,
    }
}

/// Whether `actual` contains `expected`: every key of an expected object is in the actual
/// object with a value that contains the expected one (recursively); arrays match element
/// by element and must have the same length; anything else must be equal.
pub fn json_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(key, ev)| a.get(key).is_some_and(|av| json_subset(ev, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| json_subset(e, a))
        }
        _ => json_equal(expected, actual),
    }
}

/// Order of two numbers or two strings; `None` for anything else.
fn json_order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let exact = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (exact(x), exact(y)) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// `contains`: a substring of a string, an element of an array, a key of an object.
fn json_contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
        (Value::Array(items), _) => items.iter().any(|item| json_equal(item, expected)),
        (Value::Object(map), Value::String(key)) => map.contains_key(key),
        _ => false,
    }
}

impl CaptureSource {
    /// The value this source takes from `frame`, if it has one: a JSON path's selected
    /// value (a string as is, anything else as JSON text), or a regex's first group (or
    /// whole match) in a text message.
    pub fn extract(&self, frame: &FrameView) -> Option<String> {
        match frame {
            FrameView::Text(text) => self.capture(text),
            _ => None,
        }
    }

    /// Like [`extract`](Self::extract), from the text of a message.
    pub fn capture(&self, text: &str) -> Option<String> {
        match self {
            CaptureSource::Json(path) => {
                let value: Value = serde_json::from_str(text).ok()?;
                match select(path, &value)? {
                    Value::String(text) => Some(text),
                    other => Some(other.to_string()),
                }
            }
            CaptureSource::Regex(regex) => {
                let captures = regex.regex.captures(text)?;
                let found = captures.get(1).or_else(|| captures.get(0))?;
                Some(found.as_str().to_owned())
            }
        }
    }
}

impl fmt::Display for CaptureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureSource::Json(path) => write!(f, "json {path}"),
            CaptureSource::Regex(regex) => write!(f, "regex {regex}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::command::{Command, Expectation, NoVariables, ReplInput, parse_repl_line};

    fn matcher(expect: &str) -> Spanned<Matcher> {
        let Ok(ReplInput::Command(statement)) = parse_repl_line(&format!("/expect {expect}"))
        else {
            panic!("not an expect: {expect}")
        };
        match statement.command {
            Command::Expect(e) => match e.expectation {
                Expectation::Message(m) | Expectation::Response(m) => m,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn resolved(expect: &str) -> ResolvedMatcher {
        let vars: HashMap<String, String> = [("ID", "c-1"), ("N", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        matcher(expect)
            .resolve(&vars, Some(&json!("Hello World!")))
            .unwrap()
    }

    fn text_matches(expect: &str, text: &str) -> bool {
        resolved(expect).matches(&FrameView::Text(text))
    }

    #[test]
    fn json_paths() {
        let msg =
            r#"{"message": "Forbidden", "n": 3, "f": 2.5, "items": [1, 2], "o": {"k": null}}"#;
        for (expect, want) in [
            (r#"json $.message == "Forbidden""#, true),
            (r#"json $.message != "Forbidden""#, false),
            (r#"json $.message == "forbidden""#, false),
            ("json $.n == 3.0", true),
            ("json $.n == ${N}", true),
            ("json $.n < 4", true),
            ("json $.n >= 3", true),
            ("json $.n > 3", false),
            ("json $.f <= 2.5", true),
            (r#"json $.message < "G""#, true),
            (r#"json $.n < "4""#, false),
            ("json $.items contains 2", true),
            ("json $.items contains 5", false),
            (r#"json $.message contains "bid""#, true),
            (r#"json $.o contains "k""#, true),
            ("json $.message matches ^For", true),
            ("json $.n matches 3", false),
            ("json $.o.k exists", true),
            ("json $.missing exists", false),
            ("json $.missing not exists", true),
            ("json $.message not exists", false),
            ("json $.missing != 1", false),
            ("json $.items[*] == [1, 2]", true),
        ] {
            assert_eq!(text_matches(expect, msg), want, "{expect}");
        }
    }

    #[test]
    fn mismatch_reasons() {
        let m = resolved(r#"json $.message == "Forbidden""#);
        assert_eq!(
            m.check(&FrameView::Text(r#"{"message": "Internal"}"#)),
            Err(r#"$.message is "Internal""#.to_owned())
        );
        assert_eq!(
            m.check(&FrameView::Text("{}")),
            Err("$.message selects nothing".to_owned())
        );
        assert_eq!(
            m.check(&FrameView::Text("oops")),
            Err("not JSON: oops".to_owned())
        );
        assert_eq!(
            m.check(&FrameView::Binary(b"x")),
            Err("a binary frame, not text".to_owned())
        );
        assert_eq!(m.describe(), r#"json $.message == "Forbidden""#);
    }

    #[test]
    fn whole_json_and_subsets() {
        assert!(text_matches(
            r#"json {"a": 1, "b": [1.0]}"#,
            r#"{"b": [1], "a": 1}"#
        ));
        assert!(!text_matches(r#"json {"a": 1}"#, r#"{"a": 1, "b": 2}"#));
        assert!(text_matches(
            r#"json-subset {"a": 1}"#,
            r#"{"a": 1, "b": 2}"#
        ));
        assert!(text_matches(
            r#"json-subset {"o": {"k": 1}}"#,
            r#"{"o": {"k": 1, "j": 2}}"#
        ));
        assert!(!text_matches(
            r#"json-subset {"a": 2}"#,
            r#"{"a": 1, "b": 2}"#
        ));
        assert!(!text_matches(
            r#"json-subset [{"a": 1}]"#,
            r#"[{"a": 1}, {"a": 2}]"#
        ));
        assert!(text_matches(r#"json "id-${ID}""#, r#""id-c-1""#));
    }

    #[test]
    fn text_and_binary() {
        assert!(text_matches("text hello", "hello"));
        assert!(!text_matches("text hello", "hello "));
        assert!(text_matches(r#"text "a b""#, "a b"));
        assert!(text_matches("text contains ell", "hello"));
        assert!(text_matches("text matches ^h.*o$", "hello"));
        assert!(!text_matches("text matches ^h.*o$", "help"));
        assert!(text_matches("text ${ID}", "c-1"));
        let m = resolved("binary 48656c6c6f");
        assert!(m.matches(&FrameView::Binary(b"Hello")));
        assert!(!m.matches(&FrameView::Text("Hello")));
        assert!(resolved("any").matches(&FrameView::Binary(b"")));
        assert!(!resolved("any").matches(&FrameView::Pong(b"")));
    }

    #[test]
    fn control_frames() {
        assert!(resolved("pong").matches(&FrameView::Pong(b"x")));
        assert!(resolved("pong x").matches(&FrameView::Pong(b"x")));
        assert!(!resolved("pong y").matches(&FrameView::Pong(b"x")));
        assert!(!resolved("pong").matches(&FrameView::Text("pong")));
        let close = FrameView::Close {
            code: Some(1000),
            reason: "bye",
        };
        assert!(resolved("closed").matches(&close));
        assert!(resolved("closed 1000").matches(&close));
        assert_eq!(
            resolved("closed 1001").check(&close),
            Err("closed with 1000".to_owned())
        );
        assert!(!resolved("closed 1000").matches(&FrameView::Close {
            code: None,
            reason: ""
        }));
    }

    #[test]
    fn echo_needs_an_expected_value() {
        assert!(text_matches("echo", r#""Hello World!""#));
        // An app that echoes the body unquoted: the same verdict as the prompt's echo check.
        assert!(text_matches("echo", "Hello World!"));
        assert!(!text_matches("echo", "Hello"));
        let error = matcher("echo").resolve(&NoVariables, None).unwrap_err();
        assert!(matches!(error, ResolveError::NoEcho { .. }));
    }

    #[test]
    fn undefined_variables_fail_resolution() {
        let error = matcher("text ${NOPE}")
            .resolve(&NoVariables, None)
            .unwrap_err();
        assert_eq!(
            error,
            ResolveError::UndefinedVariable {
                name: "NOPE".into(),
                span: crate::command::Span::new(1, 14, 7)
            }
        );
        assert_eq!(
            error.render("/expect text ${NOPE}", "<prompt>", false),
            "\
error: undefined variable `NOPE`
 --> <prompt>:1:14
  |
1 | /expect text ${NOPE}
  |              ^^^^^^^
  |
  = hint: set it with `--var NOPE=VALUE`, in the environment, or with `capture NOPE = …` above
"
        );
    }

    #[test]
    fn captures_extract_values() {
        let source = |line: &str| {
            let Ok(ReplInput::Command(statement)) = parse_repl_line(line) else {
                panic!("{line}")
            };
            match statement.command {
                Command::Capture(c) => c.source.value,
                other => panic!("{other:?}"),
            }
        };
        let json = source("/capture id = json $.connectionId");
        assert_eq!(
            json.capture(r#"{"connectionId": "abc="}"#),
            Some("abc=".into())
        );
        assert_eq!(
            json.extract(&FrameView::Text(r#"{"connectionId": {"a": 1}}"#)),
            Some(r#"{"a":1}"#.into())
        );
        assert_eq!(json.capture("{}"), None);
        assert_eq!(json.capture("not json"), None);
        assert_eq!(json.extract(&FrameView::Binary(b"{}")), None);
        let group = source(r"/capture id = regex id=(\w+)");
        assert_eq!(group.capture("my id=x1 ok"), Some("x1".into()));
        let whole = source(r"/capture n = regex \d+");
        assert_eq!(whole.capture("abc 42 x"), Some("42".into()));
        assert_eq!(whole.capture("none"), None);
    }

    #[test]
    fn frames_display_briefly() {
        assert_eq!(FrameView::Text("hi").to_string(), "text hi");
        assert_eq!(
            FrameView::Binary(&[0, 1, 255]).to_string(),
            "binary 0001ff (3 bytes)"
        );
        assert_eq!(FrameView::Pong(b"ok").to_string(), "pong ok (2 bytes)");
        assert_eq!(
            FrameView::Close {
                code: Some(1001),
                reason: "bye"
            }
            .to_string(),
            "close 1001 bye"
        );
        let long = "x".repeat(400);
        assert!(
            FrameView::Text(&long)
                .to_string()
                .ends_with("… (400 bytes)")
        );
        // What the network sends cannot break the line or restyle the terminal.
        assert_eq!(
            FrameView::Text("a\nb\u{1b}[2Jé\u{1}").to_string(),
            "text a\\nb\\x1b[2Jé\\x01"
        );
        assert_eq!(
            FrameView::Close {
                code: Some(4000),
                reason: "x\ry"
            }
            .to_string(),
            "close 4000 x\\ry"
        );
    }
}
