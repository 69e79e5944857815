//! The `@connections` management API on the server's own port:
//! POST delivers the body to the client (200, empty body; 413 over the message limit;
//! 429 when the client's queue is full), GET describes the connection (camelCase JSON,
//! ISO-8601 times), DELETE closes it with 1000 (204). An unknown or closed id gets 410 with
//! `x-amzn-ErrorType: GoneException`. With `--iam-key`, every call must be SigV4-signed
//! (403 `ForbiddenException` otherwise), as on a real stage.
//!
//! HTTP hygiene, because SDK clients keep connections alive: every answer carries an
//! `x-amzn-RequestId`; the body is read (or, past the limit, discarded up to a bound)
//! before answering, so a 413 leaves the connection usable; when the server must close the
//! connection after an answer (a body past the bound, a malformed body: 400), the answer
//! says `Connection: close`, so the client does not write its next call into a closed
//! socket.

use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::mpsc::error::TrySendError;

use crate::registry::Outbound;
use crate::{ServeEvent, ServerState};

/// How much of a body past the message limit is read and thrown away so the connection
/// stays usable; beyond this the server answers at once and closes the connection.
const DISCARD_BOUND: u64 = 1024 * 1024;

/// Answers one `@connections` call for connection `id` (already percent-decoded).
pub async fn handle(
    state: ServerState,
    request: Request,
    id: String,
    started: Instant,
) -> Response {
    let method = request.method().clone();
    let request_id = state.next_id();
    let (mut response, reason) = answer(&state, request, &id).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    state.emit(ServeEvent::Managed {
        request_id,
        method: method.as_str().to_owned(),
        connection_id: id,
        status: response.status().as_u16(),
        reason,
        duration: started.elapsed(),
    });
    response
}

/// The answer to a call, and why it was refused (for the log line) when it was.
async fn answer(state: &ServerState, request: Request, id: &str) -> (Response, Option<String>) {
    let limit = state.config().max_message_size;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = match read_body(body, limit, declared).await {
        Read::Complete(body) => body,
        Read::TooLarge { drained } => {
            let mut response = too_large();
            if !drained {
                close_after(&mut response);
            }
            let reason = format!("body larger than {limit} bytes");
            return (response, Some(reason));
        }
        Read::Malformed(why) => {
            let mut response = error(400, "BadRequestException", "Bad Request");
            close_after(&mut response);
            return (response, Some(format!("malformed body: {why}")));
        }
    };
    let keys = &state.config().iam_keys;
    if !keys.is_empty() {
        // The signature covers the body, so it is checked on the body as read.
        let verified = wsprobe_core::aws::verify::verify(
            parts.method.as_str(),
            &parts.uri,
            &parts.headers,
            &body,
            keys,
            SystemTime::now(),
        );
        if let Err(rejection) = verified {
            return (
                error(403, "ForbiddenException", "Forbidden"),
                Some(rejection.reason().to_owned()),
            );
        }
    }
    let response = match parts.method {
        Method::POST => post(state, body, id),
        Method::GET => get(state, id),
        Method::DELETE => delete(state, id),
        _ => {
            return (
                error(403, "ForbiddenException", "Forbidden"),
                Some(format!(
                    "method {} is not an @connections call",
                    parts.method
                )),
            );
        }
    };
    (response, None)
}

/// What reading a request body gave.
#[derive(Debug)]
enum Read {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Over the limit; `drained` when the rest was read (and discarded), so the
    /// connection can carry the next request.
    TooLarge { drained: bool },
    /// The body is not valid HTTP/1.1 framing (e.g. a broken chunk).
    Malformed(String),
}

/// Reads a body of at most `limit` bytes; past it, reads on and discards up to
/// [`DISCARD_BOUND`] more bytes.
async fn read_body(mut body: Body, limit: usize, declared: Option<u64>) -> Read {
    let limit = limit as u64;
    let bound = limit.saturating_add(DISCARD_BOUND);
    if declared.is_some_and(|length| length > bound) {
        return Read::TooLarge { drained: false };
    }
    let mut kept = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return Read::Malformed(error.to_string()),
        };
        let Ok(data) = frame.into_data() else {
            // Trailers carry nothing a call uses.
            continue;
        };
        total = total.saturating_add(data.len() as u64);
        if total > bound {
            return Read::TooLarge { drained: false };
        }
        if total <= limit {
            kept.extend_from_slice(&data);
        }
    }
    if total > limit {
        Read::TooLarge { drained: true }
    } else {
        Read::Complete(Bytes::from(kept))
    }
}

/// Marks an answer as the last on its connection: hyper closes the connection after it.
fn close_after(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

fn post(state: &ServerState, body: Bytes, id: &str) -> Response {
    let Some(connection) = state.registry().get(id) else {
        return gone();
    };
    // Text when it is UTF-8 (what every SDK posts); binary otherwise [U].
    let outbound = match String::from_utf8(body.to_vec()) {
        Ok(text) => Outbound::Text(text),
        Err(_) => Outbound::Binary(body),
    };
    match connection.outbound.try_send(outbound) {
        Ok(()) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::OK;
            response
        }
        Err(TrySendError::Full(_)) => error(
            429,
            "LimitExceededException",
            "The client's send queue is full",
        ),
        Err(TrySendError::Closed(_)) => gone(),
    }
}

fn get(state: &ServerState, id: &str) -> Response {
    let Some(connection) = state.registry().get(id) else {
        return gone();
    };
    let info = &connection.info;
    let body = serde_json::json!({
        "connectedAt": humantime::format_rfc3339_millis(info.connected_at).to_string(),
        "identity": {
            "sourceIp": info.source_ip.to_string(),
            // The service model marks it required; clients without one get "" [U].
            "userAgent": info.user_agent.as_deref().unwrap_or(""),
        },
        "lastActiveAt": humantime::format_rfc3339_millis(info.last_active_at()).to_string(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn delete(state: &ServerState, id: &str) -> Response {
    // Removed here, so the id is gone for every call after this one, even while the
    // connection's task is still closing.
    let Some(connection) = state.registry().remove(id) else {
        return gone();
    };
    connection.close.notify_one();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn gone() -> Response {
    error(410, "GoneException", "Gone")
}

fn too_large() -> Response {
    error(413, "PayloadTooLargeException", "Request Entity Too Large")
}

/// An error in the shape AWS SDKs read: the exception name in `x-amzn-ErrorType`, a
/// `{"message": …}` body.
fn error(status: u16, kind: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_are_kept_discarded_or_refused_by_size() {
        let read = |size: usize, declared: Option<u64>| async move {
            read_body(Body::from(vec![b'x'; size]), 10, declared).await
        };
        assert!(matches!(read(10, Some(10)).await, Read::Complete(b) if b.len() == 10));
        assert!(matches!(
            read(11, None).await,
            Read::TooLarge { drained: true }
        ));
        assert!(matches!(
            read(0, Some(DISCARD_BOUND + 11)).await,
            Read::TooLarge { drained: false }
        ));
        let past_bound = usize::try_from(DISCARD_BOUND).unwrap() + 11;
        assert!(matches!(
            read(past_bound, None).await,
            Read::TooLarge { drained: false }
        ));
    }
}
