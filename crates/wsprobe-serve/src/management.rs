//! The `@connections` management API on the server's own port:
//! POST delivers the body to the client (200, empty body; 413 over the message limit;
//! 429 when the client's queue is full), GET describes the connection (camelCase JSON,
//! ISO-8601 times), DELETE closes it with 1000 (204). An unknown or closed id gets 410 with
//! `x-amzn-ErrorType: GoneException`. With `--iam-key`, every call must be SigV4-signed
//! (403 `ForbiddenException` otherwise), as on a real stage.

use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tokio::sync::mpsc::error::TrySendError;

use crate::registry::Outbound;
use crate::{ServeEvent, ServerState};

/// Answers one `@connections` call for connection `id` (already percent-decoded).
pub async fn handle(
    state: ServerState,
    request: Request,
    id: String,
    started: Instant,
) -> Response {
    let method = request.method().clone();
    let response = match authenticate(&state, request).await {
        Err(refused) => refused,
        Ok(request) => match method {
            Method::POST => post(&state, request, &id).await,
            Method::GET => get(&state, &id),
            Method::DELETE => delete(&state, &id),
            _ => error(403, "ForbiddenException", "Forbidden"),
        },
    };
    state.emit(ServeEvent::Managed {
        request_id: state.next_id(),
        method: method.as_str().to_owned(),
        connection_id: id,
        status: response.status().as_u16(),
        duration: started.elapsed(),
    });
    response
}

/// With `--iam-key`, checks the call's SigV4 signature (which covers the body, so the
/// body is read here and put back): 403 `ForbiddenException` when it is not valid.
async fn authenticate(state: &ServerState, request: Request) -> Result<Request, Response> {
    let keys = &state.config().iam_keys;
    if keys.is_empty() {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, state.config().max_message_size).await else {
        return Err(too_large());
    };
    wsprobe_core::aws::verify::verify(
        parts.method.as_str(),
        &parts.uri,
        &parts.headers,
        &body,
        keys,
        SystemTime::now(),
    )
    .map_err(|_| error(403, "ForbiddenException", "Forbidden"))?;
    Ok(Request::from_parts(parts, Body::from(body)))
}

async fn post(state: &ServerState, request: Request, id: &str) -> Response {
    let limit = state.config().max_message_size;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), limit).await else {
        return too_large();
    };
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
