//! Stage profiles: a `wsprobe.toml` that names stages (URL, auth, API key, headers, TLS,
//! proxy, AWS signing, route field, echo policy), so `wsprobe connect --stage dev` and
//! `wsprobe load --stage prod` need no long command lines.
//!
//! The file is `--config FILE`, else `./wsprobe.toml`, else `wsprobe/wsprobe.toml` in the
//! user's config directory. Secrets come from the environment (`auth = "env:DEV_TOKEN"`,
//! or `"Bearer env:DEV_TOKEN"` to prefix the variable's value); a secret written in the
//! file itself is refused unless the file says `allow_plaintext_secrets = true`. Every
//! error in the file is reported as `FILE:LINE:COL: …`.
//!
//! A stage is a partial set of options: what it leaves out is `None`. `lower.rs` puts the
//! flags first, then the stage, then the core's defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use wsprobe_core::options::EchoPolicy;
use wsprobe_core::secret::Secret;
use wsprobe_core::values::{self, Header};

/// The profile file's name, in the working directory or `wsprobe/` in the config directory.
pub(crate) const FILE_NAME: &str = "wsprobe.toml";

/// A stage of the profile file, resolved: secrets read from the environment, paths made
/// relative to the file's directory, values checked.
#[derive(Clone, Debug, Default)]
pub struct StageProfile {
    /// The stage's name (`[stages.NAME]`).
    pub name: String,
    /// The file it was read from.
    pub(crate) file: PathBuf,
    /// `url`: the stage's `ws://` or `wss://` URL.
    pub url: Option<String>,
    /// `auth`: the `Authorization` header value.
    pub(crate) auth: Option<Secret>,
    /// `api_key`: the `x-api-key` header value.
    pub(crate) api_key: Option<Secret>,
    /// `headers = { Name = "value" }`: extra handshake headers.
    pub(crate) headers: Vec<Header>,
    /// `subprotocols = ["…"]`.
    pub(crate) subprotocols: Vec<String>,
    /// `origin`.
    pub(crate) origin: Option<String>,
    /// `connect_timeout = "5s"`.
    pub(crate) connect_timeout: Option<Duration>,
    /// `cacert`, relative to the file's directory.
    pub(crate) cacert: Option<PathBuf>,
    /// `cert` and `key` (mutual TLS), relative to the file's directory.
    pub(crate) client_identity: Option<(PathBuf, PathBuf)>,
    /// `insecure = true`: no certificate verification.
    pub(crate) insecure: bool,
    /// `route_field`.
    pub(crate) route_field: Option<String>,
    /// `body_field`.
    pub(crate) body_field: Option<String>,
    /// `echo = "body" | "full" | "off"`.
    pub(crate) echo: Option<EchoPolicy>,
    /// `proxy = "http://…"` (or `"env:NAME"`); `""` connects directly.
    pub(crate) proxy: Option<Secret>,
    /// `region`: the AWS region for SigV4 signing.
    pub(crate) region: Option<String>,
    /// `profile`: the AWS credentials profile for SigV4 signing.
    pub(crate) aws_profile: Option<String>,
    /// `sigv4 = true`: sign the handshake (AWS_IAM stages).
    pub(crate) sigv4: Option<bool>,
    /// `sigv4_query = true`: sign as a presigned query string instead of headers.
    pub(crate) sigv4_query: Option<bool>,
}

/// An error in the profile file or in choosing a stage; `Display` gives `FILE:LINE:COL:`
/// when the error has a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProfileError {
    /// Where, as `FILE` or `FILE:LINE:COL`.
    pub(crate) location: String,
    /// What is wrong, and how to put it right.
    pub(crate) message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for ProfileError {}

impl From<ProfileError> for crate::Error {
    fn from(error: ProfileError) -> Self {
        crate::Error::Usage(error.to_string())
    }
}

/// Reads the stage named `stage` from `--config FILE`, `./wsprobe.toml`, or the user's
/// config directory.
pub(crate) fn read_stage(
    stage: &str,
    config_file: Option<&Path>,
) -> Result<StageProfile, ProfileError> {
    let file = find_file(config_file).ok_or_else(|| ProfileError {
        location: format!("--stage {stage}"),
        message: format!(
            "no {FILE_NAME} in the working directory{}; create one or name it with --config FILE",
            user_file()
                .map(|p| format!(" nor at {}", p.display()))
                .unwrap_or_default()
        ),
    })?;
    load(&file, stage, &|name| std::env::var(name).ok())
}

/// The profile file to read: `explicit` (`--config`), else `./wsprobe.toml`, else
/// `wsprobe/wsprobe.toml` in the user's config directory; `None` when there is none.
pub(crate) fn find_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        // Named by the user: reading it reports a missing file.
        return Some(path.to_owned());
    }
    let local = PathBuf::from(FILE_NAME);
    if local.is_file() {
        return Some(local);
    }
    user_file().filter(|path| path.is_file())
}

/// `wsprobe/wsprobe.toml` in the user's config directory.
fn user_file() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("wsprobe").join(FILE_NAME))
}

/// The REPL's history file for `stage`: `wsprobe/history-STAGE` in the user's data
/// directory (stage names are checked to be safe in a file name when the file is read).
pub(crate) fn history_file(stage: &str) -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("wsprobe").join(format!("history-{stage}")))
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Allow secrets written in the file for every stage.
    #[serde(default)]
    allow_plaintext_secrets: bool,
    #[serde(default)]
    stages: BTreeMap<Spanned<String>, Spanned<RawStage>>,
}

/// One `[stages.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    url: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    subprotocols: Vec<String>,
    origin: Option<String>,
    connect_timeout: Option<Spanned<String>>,
    cacert: Option<PathBuf>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    #[serde(default)]
    insecure: bool,
    route_field: Option<String>,
    body_field: Option<String>,
    echo: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
    region: Option<String>,
    profile: Option<String>,
    sigv4: Option<bool>,
    sigv4_query: Option<bool>,
    allow_plaintext_secrets: Option<bool>,
}

/// Reads stage `stage` from `file`; `lookup` reads environment variables.
pub(crate) fn load(
    file: &Path,
    stage: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<StageProfile, ProfileError> {
    let text = std::fs::read_to_string(file).map_err(|e| ProfileError {
        location: file.display().to_string(),
        message: format!("cannot read the stage profiles: {e}"),
    })?;
    parse(&text, file, stage, lookup)
}

/// Parses profile file text (read from `file`, for messages and relative paths) and
/// resolves stage `stage`.
pub(crate) fn parse(
    text: &str,
    file: &Path,
    stage: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<StageProfile, ProfileError> {
    let at = |span: Option<Range<usize>>, message: String| ProfileError {
        location: location(file, text, span),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_owned()))?;
    for name in raw.stages.keys() {
        if !valid_stage_name(name.get_ref()) {
            return Err(at(
                Some(name.span()),
                format!(
                    "`{}` is not a stage name: use letters, digits, `-`, `_` and `.`",
                    name.get_ref()
                ),
            ));
        }
    }
    let Some((_, spanned)) = raw.stages.iter().find(|(name, _)| name.get_ref() == stage) else {
        let known: Vec<&str> = raw.stages.keys().map(|k| k.get_ref().as_str()).collect();
        return Err(ProfileError {
            location: file.display().to_string(),
            message: if known.is_empty() {
                format!("no stage `{stage}`: the file defines none; add a [stages.{stage}] table")
            } else {
                format!("no stage `{stage}`; stages here: {}", known.join(", "))
            },
        });
    };
    let raw_stage = spanned.get_ref();
    let plaintext_allowed = raw_stage
        .allow_plaintext_secrets
        .unwrap_or(raw.allow_plaintext_secrets);
    let base = file.parent().map(Path::to_owned).unwrap_or_default();
    let relative = |path: &Path| {
        if path.is_absolute() || base.as_os_str().is_empty() {
            path.to_owned()
        } else {
            base.join(path)
        }
    };
    // A value from the environment: `env:NAME`, or `PREFIX env:NAME` (e.g. `Bearer
    // env:TOKEN`). `None` when the value is a literal.
    let from_env = |field: &str, value: &Spanned<String>| -> Result<Option<String>, ProfileError> {
        let written = value.get_ref();
        let (prefix, name) = match written.strip_prefix("env:") {
            Some(name) => ("", name),
            None => match written.rsplit_once(" env:") {
                Some((prefix, name)) => (prefix, name),
                None => return Ok(None),
            },
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(at(
                Some(value.span()),
                format!("{field}: `env:{name}` does not name an environment variable"),
            ));
        }
        match lookup(name) {
            Some(found) if !found.is_empty() => Ok(Some(if prefix.is_empty() {
                found
            } else {
                format!("{prefix} {found}")
            })),
            _ => Err(at(
                Some(value.span()),
                format!("{field} comes from ${name}, which is not set (stage `{stage}`)"),
            )),
        }
    };
    let secret = |field: &str, value: &Spanned<String>| -> Result<Secret, ProfileError> {
        if let Some(found) = from_env(field, value)? {
            return Ok(Secret::new(found));
        }
        if !plaintext_allowed {
            return Err(at(
                Some(value.span()),
                format!(
                    "{field} is written in the file; write `{field} = \"env:VARIABLE\"` to read it \
                     from the environment, or set `allow_plaintext_secrets = true` if you insist"
                ),
            ));
        }
        Ok(Secret::new(value.get_ref().clone()))
    };

    // A literal that carries a secret (a password, `?token=…`, a presigned signature) is
    // one written in the file, like a literal `auth`.
    let refuse_literal = |field: &str, value: &Spanned<String>, what: &str| {
        at(
            Some(value.span()),
            format!(
                "{field} {what} written in the file; write `{field} = \"env:VARIABLE\"` to read \
                 it from the environment, or set `allow_plaintext_secrets = true` if you insist"
            ),
        )
    };
    let url = match &raw_stage.url {
        Some(url) => {
            let text = match from_env("url", url)? {
                Some(found) => found,
                None => {
                    let written = url.get_ref();
                    if !plaintext_allowed
                        && wsprobe_core::client::redacted_url_text(written) != *written
                    {
                        return Err(refuse_literal("url", url, "carries a password or a token"));
                    }
                    written.clone()
                }
            };
            wsprobe_core::client::parse_url(&text)
                .map_err(|e| at(Some(url.span()), e.to_string()))?;
            Some(text.trim().to_owned())
        }
        None => None,
    };
    let auth = raw_stage
        .auth
        .as_ref()
        .map(|v| secret("auth", v))
        .transpose()?;
    let api_key = raw_stage
        .api_key
        .as_ref()
        .map(|v| secret("api_key", v))
        .transpose()?;
    let mut headers = Vec::with_capacity(raw_stage.headers.len());
    for (name, value) in &raw_stage.headers {
        let field = format!("headers.{name}");
        let value_text = match from_env(&field, value)? {
            Some(found) => found,
            // `Authorization`, `X-Api-Key`, `X-Auth-Token`: a secret, like `auth`.
            None if !plaintext_allowed && wsprobe_core::secret::name_looks_secret(name) => {
                return Err(refuse_literal(&field, value, "is a secret"));
            }
            None => value.get_ref().clone(),
        };
        let header = values::parse_header(&format!("{name}: {value_text}"))
            .map_err(|e| at(Some(value.span()), format!("headers.{name}: {e}")))?;
        headers.push(header);
    }
    let connect_timeout = match &raw_stage.connect_timeout {
        Some(text) => {
            let timeout = values::parse_duration(text.get_ref())
                .map_err(|e| at(Some(text.span()), format!("connect_timeout: {e}")))?;
            if timeout.is_zero() {
                return Err(at(
                    Some(text.span()),
                    "connect_timeout must be longer than 0s".to_owned(),
                ));
            }
            Some(timeout)
        }
        None => None,
    };
    let client_identity = match (&raw_stage.cert, &raw_stage.key) {
        (Some(cert), Some(key)) => Some((relative(cert.get_ref()), relative(key.get_ref()))),
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => {
            return Err(at(
                Some(one.span()),
                "cert and key go together: give both or neither".to_owned(),
            ));
        }
    };
    let echo = match &raw_stage.echo {
        Some(text) => Some(match text.get_ref().as_str() {
            "body" => EchoPolicy::Body,
            "full" => EchoPolicy::Full,
            "off" => EchoPolicy::Off,
            other => {
                return Err(at(
                    Some(text.span()),
                    format!("echo = \"{other}\" is not one of \"body\", \"full\", \"off\""),
                ));
            }
        }),
        None => None,
    };
    let proxy = match &raw_stage.proxy {
        Some(value) => Some(match from_env("proxy", value)? {
            Some(found) => Secret::new(found),
            // A proxy URL is no secret unless it carries a password.
            None if value.get_ref().contains('@') => secret("proxy", value)?,
            None => Secret::new(value.get_ref().clone()),
        }),
        None => None,
    };
    Ok(StageProfile {
        name: stage.to_owned(),
        file: file.to_owned(),
        url,
        auth,
        api_key,
        headers,
        subprotocols: raw_stage.subprotocols.clone(),
        origin: raw_stage.origin.clone(),
        connect_timeout,
        cacert: raw_stage.cacert.as_deref().map(relative),
        client_identity,
        insecure: raw_stage.insecure,
        route_field: raw_stage.route_field.clone(),
        body_field: raw_stage.body_field.clone(),
        echo,
        proxy,
        region: raw_stage.region.clone(),
        aws_profile: raw_stage.profile.clone(),
        sigv4: raw_stage.sigv4,
        sigv4_query: raw_stage.sigv4_query,
    })
}

/// Letters, digits, `-`, `_` and `.` (not only dots): safe in a history file name.
fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().any(|c| c != '.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `FILE:LINE:COL` of byte offset `span.start` in `text` (1-based; columns count
/// characters), or `FILE` without a span.
fn location(file: &Path, text: &str, span: Option<Range<usize>>) -> String {
    let Some(span) = span else {
        return file.display().to_string();
    };
    let mut offset = span.start.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("{}:{line}:{column}", file.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = r#"
[stages.dev]
url = "wss://abc123.execute-api.eu-west-1.amazonaws.com/dev"
auth = "Bearer env:DEV_TOKEN"
api_key = "env:DEV_KEY"
headers = { X-Tenant = "acme", X-Trace = "env:TRACE" }
route_field = "message"
echo = "full"
connect_timeout = "3s"
cacert = "certs/ca.pem"
region = "eu-west-1"
profile = "dev-admin"
sigv4 = true

[stages.prod]
url = "wss://xyz.execute-api.eu-west-1.amazonaws.com/prod"
"#;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn parse_at(
        text: &str,
        stage: &str,
        vars: &[(&str, &str)],
    ) -> Result<StageProfile, ProfileError> {
        parse(text, Path::new("conf/wsprobe.toml"), stage, &env(vars))
    }

    #[test]
    fn a_stage_resolves_secrets_from_the_environment() {
        let profile = parse_at(
            FILE,
            "dev",
            &[("DEV_TOKEN", "t0k"), ("DEV_KEY", "k1"), ("TRACE", "on")],
        )
        .unwrap();
        assert_eq!(
            profile.url.as_deref(),
            Some("wss://abc123.execute-api.eu-west-1.amazonaws.com/dev")
        );
        assert_eq!(profile.auth.unwrap().expose(), "Bearer t0k");
        assert_eq!(profile.api_key.unwrap().expose(), "k1");
        let headers: Vec<(String, String)> = profile
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        assert_eq!(
            headers,
            [
                ("X-Tenant".to_owned(), "acme".to_owned()),
                ("X-Trace".to_owned(), "on".to_owned())
            ]
        );
        assert_eq!(profile.route_field.as_deref(), Some("message"));
        assert_eq!(profile.echo, Some(EchoPolicy::Full));
        assert_eq!(profile.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(profile.cacert, Some(PathBuf::from("conf/certs/ca.pem")));
        assert_eq!(profile.region.as_deref(), Some("eu-west-1"));
        assert_eq!(profile.aws_profile.as_deref(), Some("dev-admin"));
        assert_eq!(profile.sigv4, Some(true));
        let prod = parse_at(FILE, "prod", &[]).unwrap();
        assert!(prod.auth.is_none());
    }

    #[test]
    fn a_missing_variable_is_reported_at_its_place() {
        let error = parse_at(FILE, "dev", &[("DEV_KEY", "k1"), ("TRACE", "on")]).unwrap_err();
        assert_eq!(error.location, "conf/wsprobe.toml:4:8");
        assert!(error.message.contains("$DEV_TOKEN"), "{}", error.message);
    }

    #[test]
    fn plaintext_secrets_need_the_users_insistence() {
        let text = "[stages.dev]\nurl = \"ws://h/dev\"\nauth = \"Bearer hunter2\"\n";
        let error = parse_at(text, "dev", &[]).unwrap_err();
        assert_eq!(error.location, "conf/wsprobe.toml:3:8");
        assert!(error.message.contains("env:VARIABLE"), "{}", error.message);
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let allowed = format!("allow_plaintext_secrets = true\n{text}");
        let profile = parse_at(&allowed, "dev", &[]).unwrap();
        assert_eq!(profile.auth.unwrap().expose(), "Bearer hunter2");
        let per_stage = format!("{text}allow_plaintext_secrets = true\n");
        assert!(parse_at(&per_stage, "dev", &[]).is_ok());
    }

    /// Secret-looking headers, URL passwords and query tokens are secrets written in the
    /// file too (before, only `auth`, `api_key` and a proxy password were refused).
    #[test]
    fn secret_headers_and_urls_with_secrets_need_the_users_insistence() {
        let cases = [
            "[stages.dev]\nheaders = { Authorization = \"Bearer hunter2\" }\n",
            "[stages.dev]\nheaders = { X-Api-Key = \"hunter2\" }\n",
            "[stages.dev]\nurl = \"wss://u:hunter2@h/dev\"\n",
            "[stages.dev]\nurl = \"wss://h/dev?token=hunter2\"\n",
            "[stages.dev]\nurl = \"wss://h/dev?X-Amz-Signature=hunter2\"\n",
        ];
        for text in cases {
            let error = parse_at(text, "dev", &[]).unwrap_err();
            assert!(error.message.contains("env:VARIABLE"), "{text}: {error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
            let allowed = format!("allow_plaintext_secrets = true\n{text}");
            assert!(parse_at(&allowed, "dev", &[]).is_ok(), "{text}");
        }
        // From the environment, and headers that are no secret, are fine.
        let from_env = "[stages.dev]\nurl = \"env:DEV_URL\"\n\
                        headers = { Authorization = \"Bearer env:T\", X-Trace = \"on\" }\n";
        let profile = parse_at(
            from_env,
            "dev",
            &[("DEV_URL", "wss://h/dev?token=t1"), ("T", "t2")],
        )
        .unwrap();
        assert_eq!(profile.url.as_deref(), Some("wss://h/dev?token=t1"));
        assert_eq!(profile.headers.len(), 2);
    }

    #[test]
    fn syntax_and_value_errors_have_line_and_column() {
        let cases = [
            (
                "[stages.dev]\nurl = \"ws://h/dev\"\nrout_field = \"x\"\n",
                "3:1",
                "rout_field",
            ),
            ("[stages.dev]\nurl = ws://h\n", "2:7", ""),
            ("[stages.dev]\nurl = \"h/dev\"\n", "2:7", "no scheme"),
            ("[stages.dev]\necho = \"loud\"\n", "2:8", "not one of"),
            ("[stages.dev]\nconnect_timeout = \"5\"\n", "2:19", "no unit"),
            ("[stages.dev]\ncert = \"c.pem\"\n", "2:8", "cert and key"),
            ("[stages.\"a/b\"]\n", "1:9", "not a stage name"),
        ];
        for (text, place, words) in cases {
            let error = parse_at(text, "dev", &[]).unwrap_err();
            assert_eq!(
                error.location,
                format!("conf/wsprobe.toml:{place}"),
                "{text:?}: {error}"
            );
            assert!(error.message.contains(words), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_proxy_with_a_password_is_a_secret_and_one_without_is_not() {
        let plain = "[stages.dev]\nproxy = \"http://proxy.corp:3128\"\n";
        let profile = parse_at(plain, "dev", &[]).unwrap();
        assert_eq!(profile.proxy.unwrap().expose(), "http://proxy.corp:3128");
        let with_password = "[stages.dev]\nproxy = \"http://u:pw@proxy.corp:3128\"\n";
        let error = parse_at(with_password, "dev", &[]).unwrap_err();
        assert_eq!(error.location, "conf/wsprobe.toml:2:9");
        assert!(!error.to_string().contains("pw@"), "{error}");
        let from_env = "[stages.dev]\nproxy = \"env:CORP_PROXY\"\n";
        let profile = parse_at(from_env, "dev", &[("CORP_PROXY", "http://u:pw@p:1")]).unwrap();
        assert_eq!(profile.proxy.unwrap().expose(), "http://u:pw@p:1");
    }

    #[test]
    fn an_unknown_stage_lists_the_known_ones() {
        let error = parse_at(FILE, "staging", &[]).unwrap_err();
        assert_eq!(error.location, "conf/wsprobe.toml");
        assert!(error.message.contains("dev, prod"), "{}", error.message);
    }

    #[test]
    fn history_is_kept_per_stage() {
        if let Some(path) = history_file("dev") {
            assert!(path.ends_with("wsprobe/history-dev"), "{}", path.display());
        }
    }

    #[test]
    fn locations_count_characters() {
        let text = "a = 1\né = \"x\"\n";
        let at = text.find('"').unwrap();
        assert_eq!(location(Path::new("f"), text, Some(at..at + 1)), "f:2:5");
        assert_eq!(location(Path::new("f"), text, None), "f");
    }
}
