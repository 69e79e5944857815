//! A script's lines put together: test blocks, connect options attached to their
//! `connect`, `expect connect-refused` folded into it, and the file-wide checks (`@name`
//! defined above, a connection before anything is sent).
//!
//! Every line is parsed even after an error, so one run reports every syntax error; a
//! broken line leaves enough state behind that the lines after it do not cascade.

use std::path::Path;

use super::ast::*;
use super::error::{ErrorKind, SyntaxError, SyntaxErrors, did_you_mean};
use super::parse::{CONNECT_OPTIONS, Line, Mode, indent_of, is_connection_name, parse_line};

/// Parses a whole script; see [`super::parse_script`].
pub(crate) fn parse_script(source: &str, file_name: &str) -> Result<Script, SyntaxErrors> {
    let mut builder = ScriptBuilder::new(file_name);
    for (index, text) in source.lines().enumerate() {
        let line_no = index + 1;
        let indent = indent_of(text);
        match parse_line(text, line_no, 0, Mode::Script) {
            Ok(line) => builder.add(line, indent),
            Err(error) => builder.failed_line(error, text, indent),
        }
    }
    builder.finish(source)
}

/// The open `connect` block that indented options attach to.
struct OpenConnect {
    /// Indentation of the `connect` line (options must be deeper).
    indent: usize,
    /// False when the `connect` line itself had an error: its options are still checked
    /// but have nothing to attach to.
    valid: bool,
}

struct ScriptBuilder {
    file_name: String,
    tests: Vec<Test>,
    errors: Vec<SyntaxError>,
    /// Names of the connections opened so far, in file order.
    names: Vec<String>,
    /// Whether any `connect` came before.
    connected: bool,
    open_connect: Option<OpenConnect>,
}

impl ScriptBuilder {
    fn new(file_name: &str) -> Self {
        let stem = Path::new(file_name)
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or(file_name)
            .to_owned();
        Self {
            file_name: file_name.to_owned(),
            tests: vec![Test {
                name: stem,
                span: Span::new(1, 1, 0),
                implicit: true,
                statements: Vec::new(),
            }],
            errors: Vec::new(),
            names: Vec::new(),
            connected: false,
            open_connect: None,
        }
    }

    fn add(&mut self, line: Line, indent: usize) {
        match line {
            Line::Blank => {}
            Line::Test { name, span } => {
                self.open_connect = None;
                self.tests.push(Test {
                    name,
                    span,
                    implicit: false,
                    statements: Vec::new(),
                });
            }
            Line::ConnectOption(option, keyword_span) => {
                self.add_option(option, keyword_span, indent)
            }
            Line::ConnectRefused(refused) => match self.open_connect.take() {
                Some(open) => {
                    if let Some(connect) = self.last_connect().filter(|_| open.valid) {
                        connect.expect_refused = Some(refused);
                    }
                }
                None => self.errors.push(
                    SyntaxError::new(
                        ErrorKind::Misplaced,
                        "`expect connect-refused` must come right after the `connect` it checks",
                        refused.span,
                    )
                    .with_hint("put it on the line after `connect` (and its indented options)"),
                ),
            },
            Line::Statement(statement) => self.add_statement(statement, indent),
        }
    }

    fn add_option(&mut self, option: Spanned<ConnectOption>, keyword_span: Span, indent: usize) {
        match &self.open_connect {
            Some(open) if indent > open.indent => {
                let valid = open.valid;
                if let Some(connect) = self.last_connect().filter(|_| valid) {
                    connect.options.push(option);
                }
            }
            Some(_) => self.errors.push(
                SyntaxError::new(
                    ErrorKind::OptionWithoutConnect,
                    "a connect option must be indented under its `connect`",
                    keyword_span,
                )
                .with_hint("indent this line more than the `connect` line above it"),
            ),
            None => self.errors.push(
                SyntaxError::new(
                    ErrorKind::OptionWithoutConnect,
                    format!(
                        "`{}` is a connect option, but no `connect` line is above it",
                        keyword_name(&option.value)
                    ),
                    keyword_span,
                )
                .with_hint("put options on indented lines right below `connect`"),
            ),
        }
    }

    fn add_statement(&mut self, statement: Statement, indent: usize) {
        self.open_connect = None;
        if let Command::Connect(connect) = &statement.command {
            let new_name = connect
                .name
                .as_ref()
                .filter(|name| !self.names.contains(&name.value));
            if let Some(name) = new_name {
                self.names.push(name.value.clone());
            }
            self.connected = true;
            self.open_connect = Some(OpenConnect {
                indent,
                valid: true,
            });
        } else if statement.command.uses_connection() {
            match &statement.target {
                Some(target) if !self.names.contains(&target.value) => {
                    self.errors.push(self.unknown_connection(target));
                }
                None if !self.connected => self.errors.push(
                    SyntaxError::new(
                        ErrorKind::NoConnection,
                        format!(
                            "`{}` needs a connection, and no `connect` is above it",
                            statement.command.keyword()
                        ),
                        statement.keyword,
                    )
                    .with_hint("open one first: `connect URL` (or just `connect`, with `--url`)"),
                ),
                _ => {}
            }
        }
        if let Some(test) = self.tests.last_mut() {
            test.statements.push(statement);
        }
    }

    fn unknown_connection(&self, target: &Spanned<String>) -> SyntaxError {
        let error = SyntaxError::new(
            ErrorKind::UnknownConnection,
            format!("unknown connection `@{}`", target.value),
            target.span,
        );
        if let Some(suggestion) = did_you_mean(&target.value, self.names.iter().map(String::as_str))
        {
            return error.with_hint(format!("did you mean `@{suggestion}`?"));
        }
        if self.names.is_empty() {
            error.with_hint(format!(
                "name a connection above this line: `connect {} URL`",
                target.value
            ))
        } else {
            error.with_hint(format!(
                "the connections opened above are {}; open this one with `connect {} URL`",
                self.names
                    .iter()
                    .map(|n| format!("`@{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                target.value
            ))
        }
    }

    /// A line that failed to parse: record the error, and keep enough state that the
    /// lines after it do not cascade into errors of their own.
    fn failed_line(&mut self, error: SyntaxError, text: &str, indent: usize) {
        self.errors.push(error);
        let mut words = text.split_whitespace();
        let mut keyword = words.next().unwrap_or_default();
        if keyword.starts_with('@') {
            keyword = words.next().unwrap_or_default();
        }
        match keyword {
            "connect" => {
                self.connected = true;
                let tokens: Vec<&str> = words.take_while(|w| !w.starts_with('#')).collect();
                let new_name = tokens
                    .first()
                    .filter(|name| is_connection_name(name))
                    .filter(|name| !self.names.iter().any(|n| n == *name));
                if let Some(name) = new_name {
                    self.names.push((*name).to_owned());
                }
                self.open_connect = Some(OpenConnect {
                    indent,
                    valid: false,
                });
            }
            keyword if CONNECT_OPTIONS.contains(&keyword) => {}
            "test" => {
                self.open_connect = None;
                self.tests.push(Test {
                    name: String::new(),
                    span: Span::default(),
                    implicit: false,
                    statements: Vec::new(),
                });
            }
            _ => self.open_connect = None,
        }
    }

    fn last_connect(&mut self) -> Option<&mut Connect> {
        let statement = self.tests.last_mut()?.statements.last_mut()?;
        match &mut statement.command {
            Command::Connect(connect) => Some(connect),
            _ => None,
        }
    }

    fn finish(mut self, source: &str) -> Result<Script, SyntaxErrors> {
        if !self.errors.is_empty() {
            return Err(SyntaxErrors::new(&self.file_name, source, self.errors));
        }
        if let Some(first) = self.tests.first_mut().filter(|test| test.implicit) {
            match first.statements.first() {
                Some(statement) => first.span = statement.span,
                None => {
                    self.tests.remove(0);
                }
            }
        }
        Ok(Script {
            file_name: self.file_name,
            tests: self.tests,
            source: source.to_owned(),
        })
    }
}

fn keyword_name(option: &ConnectOption) -> &'static str {
    match option {
        ConnectOption::Auth(_) => "auth",
        ConnectOption::ApiKey(_) => "api-key",
        ConnectOption::Header { .. } => "header",
        ConnectOption::Subprotocol(_) => "subprotocol",
        ConnectOption::Origin(_) => "origin",
        ConnectOption::Reconnect { .. } => "reconnect",
    }
}
