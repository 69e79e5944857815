//! Where `${NAME}` gets its value in a script run or at the prompt — a capture made earlier in the file,
//! then `--var`, then the environment — and which values are secrets to redact from every output.

use std::collections::HashMap;

use crate::command::Variables;
use crate::secret::Secret;

pub use crate::secret::name_looks_secret as looks_secret;

/// The variables of one file's run: `--var` values (shared by every file), the captures
/// made so far in this file, and the environment.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    /// `--var NAME=VALUE` (and `WS_URL` from `--url` unless set explicitly).
    cli: HashMap<String, String>,
    /// `capture NAME = …` values, set as the file runs.
    captures: HashMap<String, String>,
    /// Read the process environment as the last source (off in unit tests).
    environment: bool,
}

impl Vars {
    /// `--var` values, and the environment behind them.
    pub fn new(cli: HashMap<String, String>) -> Self {
        Self {
            cli,
            captures: HashMap::new(),
            environment: true,
        }
    }

    /// Only `cli`: no environment (for tests).
    #[cfg(test)]
    fn without_environment(cli: HashMap<String, String>) -> Self {
        Self {
            cli,
            captures: HashMap::new(),
            environment: false,
        }
    }

    /// Records a captured value for the rest of the file.
    pub fn capture(&mut self, name: &str, value: String) {
        self.captures.insert(name.to_owned(), value);
    }

    /// A fresh set for the next file: the same `--var`s, no captures.
    pub fn for_next_file(&self) -> Self {
        Self {
            cli: self.cli.clone(),
            captures: HashMap::new(),
            environment: self.environment,
        }
    }

    /// Whether `name` comes from the environment (not `--var`, not a capture).
    fn environment_value(&self, name: &str) -> Option<String> {
        if !self.environment {
            return None;
        }
        std::env::var(name).ok()
    }
}

impl Variables for Vars {
    fn get(&self, name: &str) -> Option<String> {
        // A capture is the script's own, later word on a name, so it wins over `--var`.
        self.captures
            .get(name)
            .or_else(|| self.cli.get(name))
            .cloned()
            .or_else(|| self.environment_value(name))
    }
}

/// The values to redact from every output: grows as the run resolves `auth`/`api-key`
/// values; starts with `--auth`, `--api-key` and secret-looking `--var`s.
#[derive(Clone, Debug)]
pub struct Secrets {
    values: Vec<Secret>,
    /// `false` with `--show-secrets`: nothing is collected, nothing redacted.
    enabled: bool,
}

impl Secrets {
    /// An empty set; with `enabled: false` (`--show-secrets`) it never redacts.
    pub fn new(enabled: bool) -> Self {
        Self {
            values: Vec::new(),
            enabled,
        }
    }

    /// Adds a value (empty and duplicate values are ignored).
    pub fn add(&mut self, value: &str) {
        if !self.enabled
            || value.is_empty()
            || self.values.iter().any(|known| known.expose() == value)
        {
            return;
        }
        self.values.push(Secret::new(value));
        // Longer values first, so a secret that contains another is replaced whole.
        self.values
            .sort_by_key(|secret| std::cmp::Reverse(secret.expose().len()));
    }

    /// Adds the value of an `Authorization` header, and its token alone (`Bearer xyz` →
    /// also `xyz`), since the token may show up on its own.
    pub fn add_authorization(&mut self, value: &str) {
        self.add(value);
        if let Some((_scheme, token)) = value.trim().split_once(' ') {
            self.add(token.trim());
        }
    }

    /// Adds the value of a handshake header if it carries a credential (`Authorization`
    /// or `X-API-Key`, in any case).
    pub fn add_header(&mut self, name: &str, value: &str) {
        if name.eq_ignore_ascii_case("authorization") {
            self.add_authorization(value);
        } else if name.eq_ignore_ascii_case("x-api-key") {
            self.add(value);
        }
    }

    /// `text` with every known secret replaced by the redaction marker.
    pub fn redact(&self, text: &str) -> String {
        crate::secret::redact_all(text, &self.values)
    }

    /// Whether no secret is known.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_win_over_cli_values() {
        let mut vars =
            Vars::without_environment(HashMap::from([("ID".to_owned(), "from-var".to_owned())]));
        vars.capture("ID", "captured".into());
        vars.capture("OTHER", "captured".into());
        assert_eq!(vars.get("ID").as_deref(), Some("captured"));
        assert_eq!(vars.for_next_file().get("ID").as_deref(), Some("from-var"));
        assert_eq!(vars.get("OTHER").as_deref(), Some("captured"));
        assert_eq!(vars.get("MISSING"), None);
        assert_eq!(vars.for_next_file().get("OTHER"), None);
    }

    #[test]
    fn redaction_replaces_longest_first_and_splits_bearer_tokens() {
        let mut secrets = Secrets::new(true);
        secrets.add("abcd");
        secrets.add_authorization("Bearer abcdefgh");
        assert_eq!(
            secrets.redact("sent Bearer abcdefgh, then abcdefgh and abcd"),
            "sent <redacted>, then <redacted> and <redacted>"
        );
        let mut headers = Secrets::new(true);
        headers.add_header("AUTHORIZATION", "Bearer tok-123");
        headers.add_header("x-api-key", "key-456");
        headers.add_header("X-Trace", "trace-789");
        assert_eq!(
            headers.redact("tok-123 key-456 trace-789"),
            "<redacted> <redacted> trace-789"
        );
        let mut shown = Secrets::new(false);
        shown.add("abcd");
        assert_eq!(shown.redact("abcd"), "abcd");
    }
}
