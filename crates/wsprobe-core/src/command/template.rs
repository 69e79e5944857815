//! `${NAME}` interpolation: templates are parsed with the span of every variable, and
//! resolved at run time from `--var`, the environment and captures (through
//! [`Variables`]), so "undefined variable" can point at the exact `${NAME}`.
//!
//! `$${` writes a literal `${`; a `$` not followed by `{` is an ordinary character (JSON
//! paths and routes such as `$default` need no escaping).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;

use super::ast::Span;
use super::error::{ErrorKind, SyntaxError};

/// Where variable values come from at run time.
pub trait Variables {
    /// The value of `name`, if it is defined.
    fn get(&self, name: &str) -> Option<String>;
}

impl Variables for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Variables for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// Any `Fn(&str) -> Option<String>` works, e.g. one that looks in captures, then
/// `--var`, then the environment.
impl<F: Fn(&str) -> Option<String>> Variables for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// No variables at all (a template without `${…}` resolves with this).
pub struct NoVariables;

impl Variables for NoVariables {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text taken as is (`$${` already turned into `${`).
    Literal(String),
    /// `${NAME}`, with the span of the whole `${NAME}`.
    Var {
        /// The variable's name.
        name: String,
        /// The whole `${NAME}`.
        span: Span,
    },
}

/// A text with `${NAME}` variables in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order.
    pub parts: Vec<TemplatePart>,
    /// The text as written in the source.
    pub source: String,
    /// Where the template was written.
    pub span: Span,
}

/// Why a template could not be resolved at run time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `${NAME}` names no `--var`, environment variable or capture.
    #[error("undefined variable `{name}`")]
    UndefinedVariable {
        /// The variable's name.
        name: String,
        /// The `${NAME}`.
        span: Span,
    },
    /// After interpolation, a JSON value is no longer valid JSON.
    #[error("after interpolation this is not valid JSON: {message}")]
    InvalidJson {
        /// serde_json's complaint.
        message: String,
        /// The JSON value as written.
        span: Span,
    },
    /// `expect echo` with nothing to compare with.
    #[error(
        "`expect echo` needs a route-tagged `send` before it, and an echo policy other than `off`"
    )]
    NoEcho {
        /// The `echo` matcher.
        span: Span,
    },
}

impl ResolveError {
    /// Where the problem is.
    pub fn span(&self) -> Span {
        match self {
            ResolveError::UndefinedVariable { span, .. }
            | ResolveError::InvalidJson { span, .. }
            | ResolveError::NoEcho { span } => *span,
        }
    }

    /// A suggestion for the user, if there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            // `wsprobe run --url URL` is what sets it.
            ResolveError::UndefinedVariable { name, .. } if name == "WS_URL" => Some(
                "give the URL with `--url URL` (it sets ${WS_URL}), or set WS_URL in the environment"
                    .into(),
            ),
            ResolveError::UndefinedVariable { name, .. } => Some(format!(
                "set it with `--var {name}=VALUE`, in the environment, or with `capture {name} = …` above"
            )),
            _ => None,
        }
    }

    /// The error as a [`Diagnostic`](super::Diagnostic), for [`Script::render`](super::Script::render).
    pub fn diagnostic(&self) -> super::error::Diagnostic {
        super::error::Diagnostic {
            message: self.to_string(),
            span: self.span(),
            label: None,
            hint: self.hint(),
        }
    }

    /// Renders the error rustc-style, like a syntax error.
    pub fn render(&self, source_line: &str, file_name: &str, color: bool) -> String {
        super::error::render_diagnostic(&self.diagnostic(), source_line, Some(file_name), color)
    }
}

/// Is `name` a valid variable (or capture) name: `[A-Za-z_][A-Za-z0-9_]*`?
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    /// `text` as it is, written at `span`: no `${…}` is read in it.
    pub fn literal(text: String, span: Span) -> Template {
        Template {
            parts: vec![TemplatePart::Literal(text.clone())],
            source: text,
            span,
        }
    }

    /// Parses `text`, which starts at `line`:`column` of the source.
    pub fn parse(text: &str, line: usize, column: usize) -> Result<Template, SyntaxError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        // Column of the start of `rest`, in characters.
        let mut col = column;
        while let Some(at) = rest.find('$') {
            let (before, from_dollar) = rest.split_at(at);
            literal.push_str(before);
            col += before.chars().count();
            if let Some(after) = from_dollar.strip_prefix("$${") {
                literal.push_str("${");
                rest = after;
                col += 3;
            } else if let Some(after_brace) = from_dollar.strip_prefix("${") {
                let Some(close) = after_brace.find('}') else {
                    return Err(SyntaxError::new(
                        ErrorKind::BadVariable,
                        "unterminated variable: `${` without `}`",
                        Span::new(line, col, 2),
                    )
                    .with_hint("write `${NAME}`, or `$${` for a literal `${`"));
                };
                let name = &after_brace[..close];
                let len = name.chars().count() + 3;
                let span = Span::new(line, col, len);
                if !is_variable_name(name) {
                    return Err(SyntaxError::new(
                        ErrorKind::BadVariable,
                        format!("`{name}` is not a variable name"),
                        span,
                    )
                    .with_hint("names are letters, digits and `_`, not starting with a digit"));
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Var {
                    name: name.to_owned(),
                    span,
                });
                rest = &after_brace[close + 1..];
                col += len;
            } else {
                literal.push('$');
                rest = &from_dollar[1..];
                col += 1;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(Template {
            parts,
            source: text.to_owned(),
            span: Span::new(line, column, text.chars().count()),
        })
    }

    /// The text, if the template has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [TemplatePart::Literal(text)] => Some(text),
            [] => Some(""),
            _ => None,
        }
    }

    /// The variables used, with their spans.
    pub fn variables(&self) -> impl Iterator<Item = (&str, Span)> {
        self.parts.iter().filter_map(|part| match part {
            TemplatePart::Var { name, span } => Some((name.as_str(), *span)),
            TemplatePart::Literal(_) => None,
        })
    }

    /// The text with every variable replaced by its value.
    pub fn resolve(&self, vars: &dyn Variables) -> Result<String, ResolveError> {
        self.resolve_with(vars, |_, value, out| out.push_str(value))
    }

    fn resolve_with(
        &self,
        vars: &dyn Variables,
        mut insert: impl FnMut(usize, &str, &mut String),
    ) -> Result<String, ResolveError> {
        let mut out = String::new();
        let mut var_index = 0;
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Var { name, span } => {
                    let value = vars
                        .get(name)
                        .ok_or_else(|| ResolveError::UndefinedVariable {
                            name: name.clone(),
                            span: *span,
                        })?;
                    insert(var_index, &value, &mut out);
                    var_index += 1;
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A JSON value that may hold `${NAME}` — inside strings (`"id-${ID}"`, where the value
/// is inserted JSON-escaped) or in place of a value (`${COUNT}`, inserted as JSON text).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonTemplate {
    /// The JSON text as a template.
    pub template: Template,
    /// For each variable, in order: whether it stands inside a JSON string.
    pub in_string: Vec<bool>,
    /// The value, when the template has no variables (checked at parse time).
    pub literal: Option<Value>,
}

impl JsonTemplate {
    /// Parses the JSON value at the start of `text` (at `line`:`column`). Returns it and
    /// the number of bytes of `text` it takes; what follows is left to the caller.
    pub fn parse_prefix(
        text: &str,
        line: usize,
        column: usize,
    ) -> Result<(JsonTemplate, usize), SyntaxError> {
        let (placeholder, vars_in_string) = placeholder_json(text);
        let mut stream = serde_json::Deserializer::from_str(&placeholder).into_iter::<Value>();
        let end = match stream.next() {
            // A value that ends inside a stand-in (`0` of `0    `) ends after the variable.
            Some(Ok(_)) => {
                let end = stream.byte_offset();
                vars_in_string
                    .iter()
                    .find(|var| var.at < end && end < var.at + var.len)
                    .map_or(end, |var| var.at + var.len)
            }
            Some(Err(error)) => {
                return Err(json_syntax_error(&error, text, line, column));
            }
            None => {
                return Err(SyntaxError::new(
                    ErrorKind::BadJson,
                    "expected a JSON value",
                    Span::new(line, column, 1),
                ));
            }
        };
        let json_text = &text[..end];
        let template = Template::parse(json_text, line, column)?;
        let in_string: Vec<bool> = vars_in_string
            .into_iter()
            .filter(|var| var.at < end)
            .map(|var| var.in_string)
            .collect();
        let literal = match template.as_literal() {
            // `$${` inside a string makes the literal differ from the source text.
            Some(literal_text) => Some(
                serde_json::from_str(literal_text)
                    .map_err(|error| json_syntax_error(&error, json_text, line, column))?,
            ),
            None => None,
        };
        Ok((
            JsonTemplate {
                template,
                in_string,
                literal,
            },
            end,
        ))
    }

    /// Parses `text`, which must be one JSON value and nothing else.
    pub fn parse(text: &str, line: usize, column: usize) -> Result<JsonTemplate, SyntaxError> {
        let (json, end) = Self::parse_prefix(text, line, column)?;
        let trailing = &text[end..];
        if let Some(offset) = trailing.find(|c: char| !c.is_whitespace()) {
            let at = column + text[..end + offset].chars().count();
            return Err(SyntaxError::new(
                ErrorKind::BadJson,
                "unexpected text after the JSON value",
                Span::new(line, at, trailing.trim().chars().count()),
            ));
        }
        Ok(json)
    }

    /// The value, with variables inserted. A template that is one lone variable
    /// (`== ${ID}`) takes the variable's value as JSON when it is JSON, and as a string
    /// otherwise, so a captured id compares without quotes.
    pub fn resolve(&self, vars: &dyn Variables) -> Result<Value, ResolveError> {
        if let Some(value) = &self.literal {
            return Ok(value.clone());
        }
        if let [TemplatePart::Var { name, span }] = self.template.parts.as_slice() {
            let value = vars
                .get(name)
                .ok_or_else(|| ResolveError::UndefinedVariable {
                    name: name.clone(),
                    span: *span,
                })?;
            return Ok(serde_json::from_str(&value).unwrap_or(Value::String(value)));
        }
        let text = self.template.resolve_with(vars, |index, value, out| {
            if self.in_string.get(index).copied().unwrap_or(false) {
                // serde_json escapes exactly what a JSON string needs; drop its quotes.
                let quoted = Value::String(value.to_owned()).to_string();
                out.push_str(&quoted[1..quoted.len() - 1]);
            } else {
                out.push_str(value);
            }
        })?;
        serde_json::from_str(&text).map_err(|error| ResolveError::InvalidJson {
            message: json_error_message(&error),
            span: self.template.span,
        })
    }
}

impl fmt::Display for JsonTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template.source)
    }
}

/// `text` with each well-formed `${NAME}` replaced by a same-length stand-in that keeps
/// the JSON valid (`x…` inside a string, `0` and spaces outside), so serde_json can find
/// where the value ends. Also returns where each variable is. Malformed `${` are left for
/// [`Template::parse`] to report.
fn placeholder_json(text: &str) -> (String, Vec<PlaceholderVar>) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut vars = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("$${") {
            out.push_str("$${");
            i += 3;
            continue;
        }
        let variable_len = rest.strip_prefix("${").and_then(|after| {
            let close = after.find('}')?;
            is_variable_name(&after[..close]).then_some(close + 3)
        });
        if let Some(len) = variable_len {
            vars.push(PlaceholderVar {
                at: i,
                len,
                in_string,
            });
            if in_string {
                out.extend(std::iter::repeat_n('x', len));
            } else {
                out.push('0');
                out.extend(std::iter::repeat_n(' ', len - 1));
            }
            escaped = false;
            i += len;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        i += c.len_utf8();
    }
    (out, vars)
}

/// A variable found by [`placeholder_json`].
struct PlaceholderVar {
    /// Byte offset of its `$`.
    at: usize,
    /// Byte length of `${NAME}`.
    len: usize,
    /// Whether it stands inside a JSON string.
    in_string: bool,
}

/// serde_json's message without its " at line L column C" suffix (we point with a caret).
pub(crate) fn json_error_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// A syntax error for invalid JSON in `text` (at `line`:`column`), pointing at the
/// character serde_json stopped at.
fn json_syntax_error(
    error: &serde_json::Error,
    text: &str,
    line: usize,
    column: usize,
) -> SyntaxError {
    // serde_json counts columns in bytes on its line 1 (our text has no newlines).
    let byte_column = error.column().saturating_sub(1).min(text.len());
    let mut byte_at = byte_column;
    while !text.is_char_boundary(byte_at) {
        byte_at -= 1;
    }
    let mut at = column + text[..byte_at].chars().count();
    if error.is_eof() {
        at = column + text.chars().count();
    }
    let message = json_error_message(error);
    let hint = if error.is_eof() {
        Some("the JSON value must end on the same line".to_owned())
    } else {
        None
    };
    let mut syntax_error = SyntaxError::new(
        ErrorKind::BadJson,
        format!("invalid JSON: {message}"),
        Span::new(line, at, 1),
    );
    if let Some(hint) = hint {
        syntax_error = syntax_error.with_hint(hint);
    }
    syntax_error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_variables_with_spans() {
        let t = Template::parse("a ${B} c$${D} $e", 3, 10).unwrap();
        assert_eq!(
            t.parts,
            vec![
                TemplatePart::Literal("a ".into()),
                TemplatePart::Var {
                    name: "B".into(),
                    span: Span::new(3, 12, 4)
                },
                TemplatePart::Literal(" c${D} $e".into()),
            ]
        );
        assert_eq!(t.source, "a ${B} c$${D} $e");
        assert_eq!(t.resolve(&vars(&[("B", "x")])).unwrap(), "a x c${D} $e");
    }

    #[test]
    fn undefined_variable_points_at_it() {
        let t = Template::parse("é${NOPE}", 1, 1).unwrap();
        assert_eq!(
            t.resolve(&NoVariables),
            Err(ResolveError::UndefinedVariable {
                name: "NOPE".into(),
                span: Span::new(1, 2, 7)
            })
        );
    }

    #[test]
    fn bad_variables_are_syntax_errors() {
        let e = Template::parse("x ${OPEN", 1, 1).unwrap_err();
        assert_eq!(e.span, Span::new(1, 3, 2));
        let e = Template::parse("${1x}", 1, 5).unwrap_err();
        assert_eq!(e.span, Span::new(1, 5, 5));
        assert!(e.message.contains("`1x`"));
    }

    #[test]
    fn literal_templates() {
        let t = Template::parse("plain", 1, 1).unwrap();
        assert_eq!(t.as_literal(), Some("plain"));
        let empty = Template::parse("", 1, 1).unwrap();
        assert_eq!(empty.as_literal(), Some(""));
    }

    #[test]
    fn json_prefix_of_a_lone_variable() {
        let (json, end) = JsonTemplate::parse_prefix("${EXPECTED} within 1s", 1, 1).unwrap();
        assert_eq!(end, 11);
        assert_eq!(json.template.source, "${EXPECTED}");
        assert_eq!(json.in_string, vec![false]);
    }

    #[test]
    fn json_prefix_stops_after_the_value() {
        let (json, end) = JsonTemplate::parse_prefix(r#"{"a": [1, 2]} within 2s"#, 1, 1).unwrap();
        assert_eq!(end, 13);
        assert_eq!(json.literal, Some(serde_json::json!({"a": [1, 2]})));
    }

    #[test]
    fn json_variables_inside_and_outside_strings() {
        let (json, _) =
            JsonTemplate::parse_prefix(r#"{"id": "c-${ID}", "n": ${N}}"#, 1, 1).unwrap();
        assert_eq!(json.in_string, vec![true, false]);
        assert_eq!(json.literal, None);
        let value = json.resolve(&vars(&[("ID", "a\"b"), ("N", "42")])).unwrap();
        assert_eq!(value, serde_json::json!({"id": "c-a\"b", "n": 42}));
        let error = json.resolve(&vars(&[("ID", "x"), ("N", "oops")]));
        assert!(matches!(error, Err(ResolveError::InvalidJson { .. })));
    }

    #[test]
    fn a_lone_variable_is_json_or_else_a_string() {
        let json = JsonTemplate::parse("${V}", 1, 1).unwrap();
        let resolve = |value: &str| json.resolve(&vars(&[("V", value)])).unwrap();
        assert_eq!(resolve("42"), serde_json::json!(42));
        assert_eq!(resolve("{\"a\": true}"), serde_json::json!({"a": true}));
        assert_eq!(resolve("abc="), serde_json::json!("abc="));
        assert!(json.resolve(&NoVariables).is_err());
    }

    #[test]
    fn invalid_json_points_at_the_problem() {
        let e = JsonTemplate::parse_prefix(r#"{"a": tru}"#, 2, 5).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadJson);
        assert_eq!(e.span.line, 2);
        let e = JsonTemplate::parse_prefix(r#"{"a": 1"#, 1, 1).unwrap_err();
        assert_eq!(e.span, Span::new(1, 8, 1));
    }
}
