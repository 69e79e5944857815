//! Integration tests: the blog's sample echo app, reproduced by `serve` in front of its
//! own three handlers (connect, disconnect, send) — as Rust stand-ins always, and as the
//! real Python handlers of `tests/it/serve_sample_app/` under `awslambdaric` (the Lambda
//! runtime client) when `python3` has it.

use serde_json::{Value, json};
use wsprobe_serve::RunningServer;

use crate::support::*;

/// The sample app's stage: routes by `message`, wants an API key, no `$default`; the
/// three handlers at their own endpoints, as three Lambdas.
async fn sample_app(connect: &str, disconnect: &str, send: &str) -> RunningServer {
    serve_flags(&[
        "--route-selection-expression",
        "$request.body.message",
        "--api-key",
        "your-api-key",
        "--route",
        &format!("$connect=lambda:{connect}"),
        "--route",
        &format!("$disconnect=lambda:{disconnect}"),
        "--route",
        &format!("send=lambda:{send}"),
    ])
    .await
}

/// The blog's transcript and its refusals, against a running sample app; returns the
/// connection id of the round trip.
async fn transcript(server: &RunningServer) -> String {
    let url = server.ws_url();
    let key = ("X-API-Key", "your-api-key");
    // The gateway's API key check, before any handler runs.
    let (status, _) = refused(&url, &[("Authorization", "Bearer token")]).await;
    assert_eq!(status, 403);
    // The connect handler's refusal.
    let (status, body) = refused(&url, &[key, ("Authorization", "Bearer nope")]).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );

    let mut events = server.events();
    let mut ws = connect_with(&url, &[key, ("Authorization", "Bearer token")]).await;
    let id = next_connection_id(&mut events).await;
    send_text(&mut ws, r#"{"message": "send", "body": "Hello World!"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""Hello World!""#);
    // No $default: anything else gets the gateway's Forbidden frame.
    send_text(&mut ws, r#"{"message": "other"}"#).await;
    assert!(
        next_text(&mut ws)
            .await
            .starts_with(r#"{"message": "Forbidden""#)
    );
    within("the close", futures_util::SinkExt::close(&mut ws))
        .await
        .expect("closing");
    assert_eq!(disconnect_code(&mut events, &id).await, 1005);
    id
}

#[tokio::test]
async fn the_sample_app_round_trip_with_stand_in_handlers() {
    let connect = InvokeApi::start(|event: Value| async move {
        if event["headers"]["Authorization"] == "Bearer token" {
            LambdaReply::status(200)
        } else {
            LambdaReply::Return(
                json!({"statusCode": 401, "body": "{\"message\":\"Unauthorized\"}"}),
            )
        }
    })
    .await;
    let mut disconnect = InvokeApi::start(|_| async { LambdaReply::status(200) }).await;
    let send = InvokeApi::start(|event: Value| async move {
        let request = &event["requestContext"];
        let message: Value =
            serde_json::from_str(event["body"].as_str().unwrap_or("{}")).expect("JSON");
        let addr = request["domainName"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("domainName is this server's address");
        let path = format!(
            "/{}/@connections/{}",
            request["stage"].as_str().unwrap_or_default(),
            request["connectionId"].as_str().unwrap_or_default()
        );
        let posted = http(
            addr,
            "POST",
            &path,
            &[],
            message["body"].to_string().as_bytes(),
        )
        .await;
        assert_eq!(posted.status, 200);
        LambdaReply::status(200)
    })
    .await;
    let server = sample_app(&connect.url, &disconnect.url, &send.url).await;
    let id = transcript(&server).await;
    let gone = disconnect.next_event().await;
    assert_eq!(gone["requestContext"]["connectionId"], id.as_str());
    assert_eq!(gone["requestContext"]["eventType"], "DISCONNECT");
}

#[tokio::test]
async fn the_sample_app_round_trip_with_its_python_handlers_under_awslambdaric() {
    if let Some(reason) = python_runtime_missing() {
        eprintln!("skipped: {reason}; `pip install awslambdaric boto3` runs it");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/serve_sample_app");
    let connect = LambdaRuntime::start().await;
    let mut disconnect = LambdaRuntime::start().await;
    let mut send = LambdaRuntime::start().await;
    let _handlers = [
        PythonHandler::start(&dir, "connect", &connect, &[]),
        PythonHandler::start(&dir, "disconnect", &disconnect, &[]),
        // A plain ws:// server: the callback goes to http://{domainName}/{stage}.
        PythonHandler::start(&dir, "send", &send, &[("SCHEME", "http")]),
    ];
    let server = sample_app(&connect.url, &disconnect.url, &send.url).await;
    let id = transcript(&server).await;
    let message = send.next_event().await;
    assert_eq!(message["requestContext"]["routeKey"], "send");
    let gone = disconnect.next_event().await;
    assert_eq!(gone["requestContext"]["connectionId"], id.as_str());
}
