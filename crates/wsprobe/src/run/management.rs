//! The `@connections` API calls of a script (`post`, `get`, `delete`), made with the
//! client's HTTP client (`client::http`), so `--cacert`, `-k`, proxies and the connect
//! timeout apply as they do to WebSocket connections.
//!
//! The real API Gateway wants these calls signed with SigV4: with `--sigv4` (or
//! `--sigv4-query`) they are, by [`crate::manage::request`].

use hyper::header::{self, HeaderMap, HeaderValue};
use url::Url;

use wsprobe_core::client::{ClientConfig, ConnectError};

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

/// `base/{id}`, with the id percent-encoded as one path segment; `None` for a base URL
/// that cannot have a path (`mailto:`).
pub fn connection_url(base: &Url, connection_id: &str) -> Option<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .push(connection_id);
    Some(url)
}

/// Calls `method url`, with `body` for a POST, within the connect timeout of `config`.
pub async fn call(
    method: Method,
    url: &Url,
    body: Option<String>,
    config: &ClientConfig,
) -> Result<Response, ConnectError> {
    let mut headers = HeaderMap::new();
    let method = match method {
        Method::Post => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            hyper::Method::POST
        }
        Method::Get => hyper::Method::GET,
        Method::Delete => hyper::Method::DELETE,
    };
    let response =
        crate::manage::request(method, url, headers, body.unwrap_or_default(), config).await?;
    Ok(Response {
        status: response.status,
        body: response.text(),
        error_type: response.aws_error_type().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_urls_encode_the_id_as_one_segment() {
        let base = Url::parse("http://127.0.0.1:9/dev/@connections").unwrap();
        assert_eq!(
            connection_url(&base, "ab=/c").unwrap().as_str(),
            "http://127.0.0.1:9/dev/@connections/ab=%2Fc"
        );
        let slash = Url::parse("http://h/dev/@connections/").unwrap();
        assert_eq!(
            connection_url(&slash, "x").unwrap().as_str(),
            "http://h/dev/@connections/x"
        );
    }
}
