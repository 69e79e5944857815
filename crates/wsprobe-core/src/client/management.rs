//! The one `@connections` client: the stage's management API (PostToConnection,
//! GetConnection, DeleteConnection) as scripts (`post`, `get`, `delete`), the prompt
//! (`/post`, `/get`, `/delete`) and `wsprobe manage` call it.
//!
//! - [`connection_url`] is the one way a connection id is written into a URL: percent-encoded
//!   fully, as the AWS SDKs send it (`=` → `%3D`, `/` → `%2F`), so the same id reaches the
//!   wire the same way from every front-end.
//! - [`request`] signs with SigV4 whenever the configuration has a signer (headers, or a
//!   presigned URL), as a real stage requires, then sends through [`super::http`], so
//!   `--cacert`, `-k`, proxies and the connect timeout apply as they do to WebSockets.

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use super::http::HttpResponse;
use super::{ClientConfig, ConnectError, redacted_url};
use crate::aws::SignError;

/// Bytes left as they are in a connection id: RFC 3986's unreserved characters. Everything
/// else is percent-encoded, `=` and `/` included.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An HTTP method of the `@connections` API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Send a message to the connection.
    Post,
    /// Read the connection's details.
    Get,
    /// Disconnect the client.
    Delete,
}

impl Method {
    /// `POST`, `GET` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        }
    }

    fn http(self) -> hyper::Method {
        match self {
            Method::Post => hyper::Method::POST,
            Method::Get => hyper::Method::GET,
            Method::Delete => hyper::Method::DELETE,
        }
    }
}

/// The answer to a management call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// AWS's error type from `x-amzn-ErrorType` (`GoneException`), if the answer names one.
    pub error_type: Option<String>,
}

/// `BASE/{id}`, the id percent-encoded as one path segment (`R0oX/Adf=` → `R0oX%2FAdf%3D`);
/// `None` for a base URL that cannot have a path (`mailto:`).
pub fn connection_url(base: &Url, connection_id: &str) -> Option<Url> {
    if base.cannot_be_a_base() {
        return None;
    }
    let mut url = base.clone();
    let path = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        utf8_percent_encode(connection_id, UNRESERVED)
    );
    url.set_path(&path);
    Some(url)
}

/// Calls `method url`, with `body` for a POST (sent as JSON), signed when `config` has a
/// signer, within the connect timeout of `config`.
pub async fn call(
    method: Method,
    url: &Url,
    body: Option<String>,
    config: &ClientConfig,
) -> Result<Response, ConnectError> {
    let mut headers = HeaderMap::new();
    if method == Method::Post {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let response = request(
        method.http(),
        url,
        headers,
        body.unwrap_or_default(),
        config,
    )
    .await?;
    Ok(Response {
        status: response.status,
        body: response.text(),
        error_type: response.aws_error_type().map(str::to_owned),
    })
}

/// Sends one HTTP request like [`super::http::request`], SigV4-signed first when
/// `config.signer` is set (headers, or a presigned URL). A region that cannot be told is
/// an [`ConnectError::InvalidUrl`] (a usage error).
pub async fn request(
    method: hyper::Method,
    url: &Url,
    headers: HeaderMap,
    body: impl Into<Bytes>,
    config: &ClientConfig,
) -> Result<HttpResponse, ConnectError> {
    let body = body.into();
    let Some(signer) = &config.signer else {
        return super::http::request(method, url, headers, body, config).await;
    };
    let sign_error = |e: SignError| match e {
        SignError::NoRegion { .. } => ConnectError::InvalidUrl {
            url: redacted_url(url),
            reason: e.to_string(),
        },
        SignError::Invalid(_) => ConnectError::Other {
            url: redacted_url(url),
            reason: e.to_string(),
        },
    };
    let mut signed = http::Request::builder()
        .method(method.clone())
        .uri(url.as_str())
        .body(())
        .map_err(|e| sign_error(SignError::Invalid(e.to_string())))?;
    *signed.headers_mut() = headers;
    signer.sign(&mut signed, &body).map_err(sign_error)?;
    let (parts, ()) = signed.into_parts();
    // A presigned call carries its signature in the URL.
    let signed_url = Url::parse(&parts.uri.to_string())
        .map_err(|e| sign_error(SignError::Invalid(e.to_string())))?;
    super::http::request(method, &signed_url, parts.headers, body, config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a test URL")
    }

    #[test]
    fn connection_ids_are_percent_encoded_as_one_segment() {
        let base = url("http://127.0.0.1:9/dev/@connections");
        assert_eq!(
            connection_url(&base, "R0oX/Adf=")
                .map(String::from)
                .as_deref(),
            Some("http://127.0.0.1:9/dev/@connections/R0oX%2FAdf%3D")
        );
        assert_eq!(
            connection_url(&base, "a b~c").map(String::from).as_deref(),
            Some("http://127.0.0.1:9/dev/@connections/a%20b~c")
        );
        let slash = url("http://h/dev/@connections/");
        assert_eq!(
            connection_url(&slash, "x").map(String::from).as_deref(),
            Some("http://h/dev/@connections/x")
        );
        assert_eq!(connection_url(&url("mailto:a@b"), "x"), None);
    }
}
