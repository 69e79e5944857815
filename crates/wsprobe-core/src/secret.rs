//! A string that must not be printed: tokens, API keys, signatures.
//!
//! `Debug` and `Display` show a redaction marker, so a secret that ends up in a log line,
//! an error or a report by accident stays secret. Code that really needs the value calls
//! [`Secret::expose`]; `--show-secrets` is honoured by callers through [`Secret::shown`].

use std::fmt;

/// What a redacted secret looks like wherever it is printed.
pub const REDACTED: &str = "<redacted>";

/// A secret value. Compare with [`Secret::matches`], which runs in constant time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the wire. Never for output.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value when `show` is set (`--show-secrets`), the redaction marker otherwise.
    pub fn shown(&self, show: bool) -> &str {
        if show { &self.0 } else { REDACTED }
    }

    /// Constant-time comparison with a candidate, so timing does not leak the secret.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let ours = self.0.as_bytes();
        // Lengths are not secret enough to hide at the cost of padding every comparison.
        ours.len() == candidate.len() && bool::from(ours.ct_eq(candidate))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Words that make a name look secret, compared case-insensitively: a variable or a
/// capture named so (`TOKEN`, `api_key`, `DB_PASSWORD`) has its value redacted, and so
/// does a URL query parameter (`?token=…`, `X-Amz-Signature=…`).
const SECRET_WORDS: [&str; 7] = [
    "token",
    "key",
    "auth",
    "secret",
    "signature",
    "password",
    "credential",
];

/// Whether something named `name` probably holds a secret.
pub fn name_looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// Whether a header named `name` probably carries a credential: a secret-looking name
/// (`Authorization`, `X-API-Key`, `X-Amz-Security-Token`, …) or a cookie.
pub fn header_looks_secret(name: &str) -> bool {
    let name = name.trim();
    name_looks_secret(name)
        || name.eq_ignore_ascii_case("cookie")
        || name.eq_ignore_ascii_case("set-cookie")
}

/// Replaces every occurrence of each secret in `text` with the redaction marker.
/// Used by reports and logs that embed user-supplied text which may contain a secret.
pub fn redact_all<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        // Very short values would redact half of any text; they are not real secrets.
        if secret.0.len() >= 4 {
            out = out.replace(&secret.0, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names() {
        for name in [
            "TOKEN",
            "api_key",
            "ApiKey",
            "DB_PASSWORD",
            "AUTH_HEADER",
            "secret",
            "X-Amz-Signature",
            "X-Amz-Credential",
        ] {
            assert!(name_looks_secret(name), "{name}");
        }
        for name in ["WS_URL", "USER", "GREETING", "conn", "page"] {
            assert!(!name_looks_secret(name), "{name}");
        }
    }

    #[test]
    fn credential_headers() {
        for name in [
            "Authorization",
            "x-api-key",
            "X-Amz-Security-Token",
            "Cookie",
            "set-cookie",
            "Proxy-Authorization",
        ] {
            assert!(header_looks_secret(name), "{name}");
        }
        for name in [
            "Host",
            "Origin",
            "x-amzn-RequestId",
            "Sec-WebSocket-Protocol",
        ] {
            assert!(!header_looks_secret(name), "{name}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("Bearer hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "Bearer hunter2");
        assert_eq!(s.shown(true), "Bearer hunter2");
        assert_eq!(s.shown(false), REDACTED);
    }

    #[test]
    fn matches_compares_whole_values() {
        let s = Secret::new("abcd");
        assert!(s.matches(b"abcd"));
        assert!(!s.matches(b"abc"));
        assert!(!s.matches(b"abce"));
        assert!(!s.matches(b"abcde"));
    }

    #[test]
    fn redact_all_replaces_every_occurrence() {
        let secrets = [Secret::new("tok123"), Secret::new("k")];
        assert_eq!(
            redact_all("auth tok123 and tok123, k stays", &secrets),
            "auth <redacted> and <redacted>, k stays"
        );
    }
}
