//! The command language shared by the REPL and scripts: one parser for a `/command`
//! typed at the `wsprobe connect` prompt and for a line of a `wsprobe run` script.
//!
//! - [`parse_script`] parses a whole file into a [`Script`] of test blocks, collecting
//!   every syntax error (each rendered rustc-style by [`SyntaxErrors::render`]).
//! - [`parse_repl_line`] turns one typed line into a [`ReplInput`].
//! - [`Matcher`]s and [`CaptureSource`]s are evaluated against received frames
//!   ([`FrameView`]) by pure functions, so the runner only moves frames around.
//!
//! The grammar and semantics are documented in `docs/language.md`.

mod assemble;
mod ast;
pub mod engine;
mod error;
mod help;
mod matcher;
mod parse;
mod reader;
mod template;
pub mod vars;

pub use ast::{
    Capture, CaptureSource, Command, CompareOp, Connect, ConnectOption, EchoPolicy, Expect,
    ExpectRefused, Expectation, JsonPathExpr, KeepAliveCommand, Matcher, Payload, Predicate,
    RegexExpr, ReplInput, Script, SecretTemplate, Span, Spanned, Statement, Test, TextPredicate,
};
pub use error::{
    Diagnostic, ErrorKind, SyntaxError, SyntaxErrors, did_you_mean, mask_secrets, render_diagnostic,
};
pub use help::{
    COMMANDS, CommandHelp, EXPECT_WORDS, MATCHER_NAMES, Scope, command_names, help_for, help_text,
};
pub use matcher::{FrameView, ResolvedMatcher, json_equal, json_subset};
pub use template::{
    JsonTemplate, NoVariables, ResolveError, Template, TemplatePart, Variables, is_variable_name,
};

/// Parses a whole script file. Every line is parsed, and every syntax error is returned
/// (in line order), so a user fixes them all in one go. `file_name` is used in messages
/// and to name the implicit test of commands before the first `test` line.
pub fn parse_script(source: &str, file_name: &str) -> Result<Script, SyntaxErrors> {
    assemble::parse_script(source, file_name)
}

/// Parses one line typed at the prompt:
/// - `""` → [`ReplInput::Empty`];
/// - `/send send x` → [`ReplInput::Command`];
/// - `//x` → [`ReplInput::Text`] of `/x` (a leading slash escaped);
/// - anything else → [`ReplInput::Text`] of the line, to be sent as typed.
///
/// Script-only lines (`test`, connect options, `expect connect-refused`) are errors here;
/// `@name` targets are not checked (the REPL knows its connections).
pub fn parse_repl_line(line: &str) -> Result<ReplInput, SyntaxError> {
    parse::parse_repl_line(line)
}

/// Codes a client may send in a close frame: 1000–1003, 1007–1014 and 3000–4999.
pub fn is_sendable_close_code(code: u16) -> bool {
    parse::is_sendable_close_code(code)
}
