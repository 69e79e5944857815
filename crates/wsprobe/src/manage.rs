//! `wsprobe manage post|get|delete CONNECTION_ID [DATA] --url URL`: one `@connections`
//! call (PostToConnection, GetConnection, DeleteConnection), SigV4-signed with `--sigv4`
//! as real stages require. Prints the status line (with AWS's error type) and the body.
//!
//! The call goes through the one `@connections` client ([`wsprobe_core::client::management`]),
//! which scripts and the prompt use too: the same URL for an id, signed whenever a signer
//! is configured.

use std::io::{IsTerminal, Read, Write};

use bytes::Bytes;
use colored::Colorize;
use hyper::Method;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::cli::{ManageAction, ManageArgs};
use crate::{Context, Error, Outcome};
use wsprobe_core::client::ConnectError;
use wsprobe_core::client::http::HttpResponse;
use wsprobe_core::client::management::{connection_url, request};
use wsprobe_core::options::ConnectOptions;

/// The largest message a stage accepts (PostToConnection's `Data` limit); standard input
/// is read up to one byte more, so the server can say 413.
const MAX_POST: usize = 128 * 1024;

/// Runs `wsprobe manage`.
pub(crate) async fn run(
    args: ManageArgs,
    options: ConnectOptions,
    _context: Context,
) -> Result<Outcome, Error> {
    let config = crate::cli::lower::client_config(&options)?;
    let base = management_base(&args.url)?;
    if args.connection_id.trim().is_empty() {
        return Err(Error::usage("the connection id is empty"));
    }
    let Some(url) = connection_url(&base, args.connection_id.trim()) else {
        return Err(Error::usage(format!(
            "`{base}` cannot take a connection id"
        )));
    };
    let (method, body) = match args.action {
        ManageAction::Post => (Method::POST, post_data(args.data)?),
        ManageAction::Get | ManageAction::Delete if args.data.is_some() => {
            return Err(Error::usage(
                "only `manage post` takes DATA; get and delete send no body",
            ));
        }
        ManageAction::Get => (Method::GET, Bytes::new()),
        ManageAction::Delete => (Method::DELETE, Bytes::new()),
    };
    let mut headers = HeaderMap::new();
    for given in &config.headers {
        let name = HeaderName::from_bytes(given.name.as_bytes())
            .map_err(|_| Error::usage(format!("`{}` is not a valid header name", given.name)))?;
        let value = HeaderValue::from_bytes(given.value.as_bytes()).map_err(|_| {
            Error::usage(format!(
                "the value of header `{}` contains a character not allowed in a header",
                given.name
            ))
        })?;
        headers.append(name, value);
    }
    let response = request(method, &url, headers, body, &config).await?;
    print_response(&response);
    Ok(if response.is_success() {
        Outcome::Success
    } else {
        Outcome::ChecksFailed
    })
}

/// The `@connections` endpoint for what the user gave: a stage URL (`ws(s)://HOST/STAGE`,
/// via [`wsprobe_core::message::management_url`]), an endpoint (`http(s)://HOST/STAGE`, as SDKs
/// take it) or the `@connections` URL itself.
pub(crate) fn management_base(text: &str) -> Result<Url, Error> {
    let text = text.trim();
    let invalid = |reason: &str| {
        Error::Connect(ConnectError::InvalidUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let url = Url::parse(text).map_err(|_| {
        invalid("write the stage (wss://HOST/STAGE) or its endpoint (https://HOST/STAGE)")
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    match url.scheme() {
        "ws" | "wss" => Ok(wsprobe_core::message::management_url(&url)),
        "http" | "https" => {
            let path = url.path().trim_end_matches('/');
            let last = path.rsplit('/').next().unwrap_or_default();
            let mut base = url.clone();
            base.set_query(None);
            base.set_fragment(None);
            if last == "@connections" || last.eq_ignore_ascii_case("%40connections") {
                base.set_path(path);
            } else {
                base.set_path(&format!("{path}/@connections"));
            }
            Ok(base)
        }
        _ => Err(invalid(
            "use ws://, wss:// (the stage) or http://, https:// (its endpoint)",
        )),
    }
}

/// DATA, or standard input when it is not a terminal.
fn post_data(data: Option<String>) -> Result<Bytes, Error> {
    if let Some(data) = data {
        return Ok(Bytes::from(data));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Error::usage(
            "`manage post` needs DATA, as an argument or on standard input",
        ));
    }
    let mut buffer = Vec::new();
    stdin
        .lock()
        .take(MAX_POST as u64 + 1)
        .read_to_end(&mut buffer)
        .map_err(|e| Error::usage(format!("cannot read standard input: {e}")))?;
    Ok(Bytes::from(buffer))
}

/// `200 OK`, or `410 Gone (GoneException)`, then the body if any.
fn print_response(response: &HttpResponse) {
    let mut status = format!("{} {}", response.status, response.reason);
    if let Some(kind) = response.aws_error_type() {
        status.push_str(&format!(" ({kind})"));
    }
    let status = status.trim_end().to_owned();
    let shown = if response.is_success() {
        status.green().bold()
    } else {
        status.red().bold()
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not an error.
    let _ = writeln!(stdout, "{shown}");
    if !response.body.is_empty() {
        let body = response.text();
        let _ = writeln!(stdout, "{}", body.trim_end());
    }
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> String {
        management_base(text).unwrap().to_string()
    }

    #[test]
    fn management_bases() {
        assert_eq!(
            base("ws://127.0.0.1:8080/dev"),
            "http://127.0.0.1:8080/dev/@connections"
        );
        assert_eq!(
            base("wss://abc.execute-api.eu-west-1.amazonaws.com/prod/"),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections"
        );
        assert_eq!(
            base("https://abc.execute-api.eu-west-1.amazonaws.com/prod"),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections"
        );
        assert_eq!(
            base("http://127.0.0.1:1/dev/@connections/"),
            "http://127.0.0.1:1/dev/@connections"
        );
        assert_eq!(
            base("http://127.0.0.1:1/dev/%40connections?x=1"),
            "http://127.0.0.1:1/dev/%40connections"
        );
        for bad in ["127.0.0.1:8080/dev", "ftp://h/dev", ""] {
            assert!(
                matches!(
                    management_base(bad),
                    Err(Error::Connect(ConnectError::InvalidUrl { .. }))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn connection_ids_are_encoded() {
        let base = management_base("ws://h:1/dev").unwrap();
        let id_url = |id| connection_url(&base, id).map(String::from);
        assert_eq!(
            id_url("R0oXAdfD0kwCH6w=").as_deref(),
            Some("http://h:1/dev/@connections/R0oXAdfD0kwCH6w%3D")
        );
        assert_eq!(
            id_url("a/b c").as_deref(),
            Some("http://h:1/dev/@connections/a%2Fb%20c")
        );
    }
}
