//! Integration tests: serve. The server runs in-process on port 0 (or as the real binary)
//! and is driven with a real WebSocket client and a raw HTTP/1.1 client over loopback.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use wsprobe_core::secret::Secret;
use wsprobe_serve::{
    LogFormat, LogSink, RouteBehaviour, RouteTable, RunningServer, SelectionExpression,
    ServeConfig, ServeEvent,
};

use crate::support::*;

fn is_aws_id(id: &str) -> bool {
    id.len() == 16
        && id.ends_with('=')
        && id[..15]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sends `method` with `body` to the `@connections` URL of connection `id`.
async fn connections_call(
    server: &RunningServer,
    method: &str,
    id: &str,
    body: &[u8],
) -> HttpResponse {
    http(
        server.addr(),
        method,
        &connection_path(server, id),
        &[],
        body,
    )
    .await
}

/// Sends one message (a raw frame, a binary message) and waits for it to be written.
async fn send_message(ws: &mut Ws, message: Message) {
    within("a send", ws.send(message)).await.unwrap();
}

/// Sends one text message over TLS and returns the text message that answers it.
async fn tls_echo(ws: &mut TlsWs, message: &str) -> String {
    within("a send", ws.send(Message::text(message.to_owned())))
        .await
        .unwrap();
    match within("the echo", ws.next()).await {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("{other:?}"),
    }
}

// 1. Stage path, other paths, plain GET, URLs.

#[tokio::test]
async fn upgrades_on_the_stage_path_with_and_without_a_trailing_slash() {
    let server = spawn_default_server().await;
    assert_eq!(
        server.ws_url(),
        format!("ws://127.0.0.1:{}/dev", server.addr().port())
    );
    assert_eq!(
        server.connections_url(),
        format!("http://127.0.0.1:{}/dev/@connections", server.addr().port())
    );
    for url in [server.ws_url(), format!("{}/", server.ws_url())] {
        let mut ws = connect(&url).await;
        send_text(&mut ws, r#"{"action":"send","body":"hi"}"#).await;
        assert_eq!(next_text(&mut ws).await, r#""hi""#);
    }
}

#[tokio::test]
async fn other_paths_get_403_forbidden() {
    let server = spawn_default_server().await;
    let base = format!("ws://{}", server.addr());
    for path in ["/prod", "/", "/dev/extra", "/devx"] {
        let (status, body) = refused(&format!("{base}{path}"), &[]).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(body, r#"{"message":"Forbidden"}"#, "{path}");
    }
    let response = http(server.addr(), "GET", "/elsewhere", &[], b"").await;
    assert_eq!(response.status, 403);
    assert_eq!(response.text(), r#"{"message":"Forbidden"}"#);
}

#[tokio::test]
async fn a_plain_get_gets_426() {
    let server = spawn_default_server().await;
    let response = http(server.addr(), "GET", "/dev", &[], b"").await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("upgrade"), Some("websocket"));
}

// 2. $connect authorization.

fn auth_config() -> ServeConfig {
    ServeConfig {
        api_keys: vec![Secret::new("key-one"), Secret::new("key-two")],
        tokens: vec![Secret::new("token-abc")],
        ..ServeConfig::default()
    }
}

#[tokio::test]
async fn missing_or_wrong_api_key_gets_403() {
    let server = spawn_server(auth_config()).await;
    let url = server.ws_url();
    let good_auth = ("Authorization", "Bearer token-abc");
    let (status, body) = refused(&url, &[good_auth]).await;
    assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    let (status, body) = refused(&url, &[good_auth, ("x-api-key", "key-three")]).await;
    assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    // The API key is checked first, as API Gateway does before any Lambda runs.
    let (status, _) = refused(&url, &[("X-API-Key", "nope")]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let server = spawn_server(auth_config()).await;
    let url = server.ws_url();
    let key = ("x-api-key", "key-two");
    let (status, body) = refused(&url, &[key]).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );
    for wrong in [
        "Bearer token-abd",
        "token-abc",
        "Basic token-abc",
        "Bearer ",
    ] {
        let (status, body) = refused(&url, &[key, ("Authorization", wrong)]).await;
        assert_eq!(
            (status, body.as_str()),
            (401, r#"{"message":"Unauthorized"}"#),
            "{wrong}"
        );
    }
}

#[tokio::test]
async fn matching_key_and_token_connect_and_arrive_as_sent() {
    let server = spawn_server(auth_config()).await;
    let mut events = server.events();
    let mut ws = connect_with(
        &server.ws_url(),
        &[
            ("X-API-Key", "key-two"),
            ("Authorization", "Bearer token-abc"),
            ("X-Custom", "yes"),
        ],
    )
    .await;
    let headers = wait_event(&mut events, |event| match event {
        ServeEvent::Connected { headers, .. } => Some(headers.clone()),
        _ => None,
    })
    .await;
    let has = |name: &str, value: &str| headers.iter().any(|(n, v)| n == name && v == value);
    assert!(has("x-api-key", "key-two"), "{headers:?}");
    assert!(has("authorization", "Bearer token-abc"), "{headers:?}");
    assert!(has("x-custom", "yes"), "{headers:?}");
    send_text(&mut ws, r#"{"action":"send","body":"in"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""in""#);
}

#[tokio::test]
async fn the_first_offered_subprotocol_is_accepted() {
    let server = spawn_default_server().await;
    let request = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = server.ws_url().into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "chat.v2, chat.v1".parse().unwrap(),
        );
        request
    };
    let (_ws, response) = within("the handshake", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "chat.v2"
    );
}

#[tokio::test]
async fn the_binary_reads_keys_and_tokens_from_the_environment() {
    let process = ServeProcess::start_with_env(
        &["--quiet"],
        &[
            ("WSPROBE_SERVE_API_KEYS", "env-key-1,env-key-2"),
            ("WSPROBE_SERVE_TOKENS", "env-token"),
        ],
    );
    let url = &process.ws_url;
    assert_eq!(
        refused(url, &[("Authorization", "Bearer env-token")])
            .await
            .0,
        403
    );
    assert_eq!(refused(url, &[("x-api-key", "env-key-2")]).await.0, 401);
    let _ws = connect_with(
        url,
        &[
            ("x-api-key", "env-key-2"),
            ("Authorization", "Bearer env-token"),
        ],
    )
    .await;
}

// 3. Connection ids.

#[tokio::test]
async fn connection_ids_look_like_api_gateway_ids_and_differ() {
    let server = spawn_default_server().await;
    let mut ids = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (ws, id) = connect_and_id(&server).await;
        assert!(is_aws_id(&id), "{id}");
        assert!(ids.insert(id));
        clients.push(ws);
    }
}

// 4. Route selection and the error frame.

#[tokio::test]
async fn unmatched_messages_get_the_gateway_error_frame_byte_for_byte_and_stay_connected() {
    let server = spawn_default_server().await;
    let (mut ws, connection_id) = connect_and_id(&server).await;
    for message in [
        r#"{"action":"nope"}"#,
        "not json",
        r#"{"body":"x"}"#,
        r#"{"action":"SEND"}"#,
    ] {
        send_text(&mut ws, message).await;
        let frame = next_text(&mut ws).await;
        let prefix =
            format!(r#"{{"message": "Forbidden", "connectionId":"{connection_id}", "requestId":""#);
        assert!(frame.starts_with(&prefix), "{frame}");
        let request_id = frame
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("\"}"))
            .unwrap_or_else(|| panic!("{frame}"));
        assert!(is_aws_id(request_id), "{frame}");
    }
    send_text(&mut ws, r#"{"action":"send","body":"still here"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""still here""#);
}

#[tokio::test]
async fn nested_selection_paths_pick_the_route() {
    let config = ServeConfig {
        route_selection_expression: SelectionExpression::parse("$request.body.meta.route").unwrap(),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut ws = connect(&server.ws_url()).await;
    send_text(&mut ws, r#"{"meta":{"route":"send"},"body":[1,2]}"#).await;
    assert_eq!(next_text(&mut ws).await, "[1,2]");
    send_text(&mut ws, r#"{"action":"send","body":"x"}"#).await;
    assert!(
        next_text(&mut ws)
            .await
            .starts_with(r#"{"message": "Forbidden""#)
    );
}

#[tokio::test]
async fn selection_expressions_with_several_variables_and_static_text() {
    let server = serve_flags(&[
        "--route-selection-expression",
        "v1:${request.body.kind}-${request.body.op}",
        "--route",
        "v1:chat-post=echo",
        "--route",
        "v1:chat-=whoami",
        "--route",
        "v1:5-[1,2]=echo-body",
    ])
    .await;
    let (mut ws, id) = connect_and_id(&server).await;
    let post = r#"{"kind":"chat","op":"post"}"#;
    send_text(&mut ws, post).await;
    assert_eq!(next_text(&mut ws).await, post);
    // A path not found is "": the rest of the key stays.
    send_text(&mut ws, r#"{"kind":"chat"}"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        format!(r#"{{"connectionId":"{id}"}}"#)
    );
    // Numbers as written, arrays as JSON text.
    send_text(&mut ws, r#"{"kind":5,"op":[1,2],"body":"stringified"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""stringified""#);
    // The match stays exact.
    send_text(&mut ws, r#"{"kind":"Chat","op":"post"}"#).await;
    assert!(
        next_text(&mut ws)
            .await
            .starts_with(r#"{"message": "Forbidden""#)
    );
}

// 5. Built-in and configured routes.

#[tokio::test]
async fn send_echoes_the_body_as_json() {
    let server = spawn_default_server().await;
    let mut ws = connect(&server.ws_url()).await;
    send_text(&mut ws, r#"{"action":"send","body":"Hello World!"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""Hello World!""#);
    send_text(
        &mut ws,
        r#"{"action":"send","body":{"n":1,"list":[true,null]}}"#,
    )
    .await;
    assert_eq!(next_text(&mut ws).await, r#"{"n":1,"list":[true,null]}"#);
}

#[tokio::test]
async fn the_sample_app_transcript_is_reproduced() {
    let config = ServeConfig {
        route_selection_expression: SelectionExpression::parse("$request.body.message").unwrap(),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut ws = connect(&server.ws_url()).await;
    send_text(&mut ws, r#"{"message": "send", "body": "Hello World!"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""Hello World!""#);
}

#[tokio::test]
async fn echo_echo_body_and_broadcast_routes() {
    let mut routes = RouteTable::default();
    routes
        .insert("whole", RouteBehaviour::Echo)
        .insert("body", RouteBehaviour::EchoBody)
        .insert("chat", RouteBehaviour::Broadcast);
    let config = ServeConfig {
        routes,
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut alice = connect(&server.ws_url()).await;
    let mut bob = connect(&server.ws_url()).await;

    let whole = r#"{"action":"whole","body":"x", "extra": 1}"#;
    send_text(&mut alice, whole).await;
    assert_eq!(next_text(&mut alice).await, whole);

    send_text(&mut alice, r#"{"action":"body","body":"only this"}"#).await;
    assert_eq!(next_text(&mut alice).await, r#""only this""#);

    send_text(&mut bob, r#"{"action":"chat","body":"to all"}"#).await;
    assert_eq!(next_text(&mut alice).await, r#""to all""#);
    assert_eq!(next_text(&mut bob).await, r#""to all""#);

    // A body route without a body fails like the sample Lambda would.
    send_text(&mut alice, r#"{"action":"body"}"#).await;
    assert!(
        next_text(&mut alice)
            .await
            .starts_with(r#"{"message": "Internal server error", "connectionId":""#)
    );
}

#[tokio::test]
async fn default_route_echo_makes_a_plain_echo_server() {
    let config = ServeConfig {
        default_route: Some(RouteBehaviour::Echo),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut ws = connect(&server.ws_url()).await;
    for message in ["plain text", r#"{"action":"unknown"}"#, "[1,2,3]"] {
        send_text(&mut ws, message).await;
        assert_eq!(next_text(&mut ws).await, message);
    }
    // Matched routes still win over $default.
    send_text(&mut ws, r#"{"action":"send","body":"b"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""b""#);
}

#[tokio::test]
async fn message_events_carry_the_route_key() {
    let config = ServeConfig {
        default_route: Some(RouteBehaviour::Echo),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut events = server.events();
    let mut ws = connect(&server.ws_url()).await;
    send_text(&mut ws, r#"{"action":"send","body":1}"#).await;
    send_text(&mut ws, "hello").await;
    let mut keys = Vec::new();
    while keys.len() < 2 {
        let key = wait_event(&mut events, |event| match event {
            ServeEvent::Message { route_key, .. } => Some(route_key.clone()),
            _ => None,
        })
        .await;
        keys.push(key);
    }
    assert_eq!(keys, [Some("send".to_owned()), Some("$default".to_owned())]);
}

// 6. @connections.

#[tokio::test]
async fn connections_post_delivers_with_raw_and_encoded_ids() {
    let server = spawn_default_server().await;
    let (mut ws, id) = connect_and_id(&server).await;
    let raw_path = connection_path(&server, &id);
    let encoded_path = format!(
        "/{}/%40connections/{}",
        server.state().config().stage,
        id.replace('=', "%3D")
    );
    let response = http(
        server.addr(),
        "POST",
        &raw_path,
        &[],
        b"{\"from\":\"lambda\"}",
    )
    .await;
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(next_text(&mut ws).await, r#"{"from":"lambda"}"#);

    let response = http(server.addr(), "POST", &encoded_path, &[], b"second").await;
    assert_eq!(response.status, 200);
    assert_eq!(next_text(&mut ws).await, "second");

    // serverless-offline's stage-less form works too.
    let bare = format!("/@connections/{id}");
    let response = http(server.addr(), "POST", &bare, &[], b"third").await;
    assert_eq!(response.status, 200);
    assert_eq!(next_text(&mut ws).await, "third");
}

#[tokio::test]
async fn connections_post_delivers_big_messages_in_frames_of_at_most_32k() {
    let server = spawn_default_server().await;
    let (mut ws, id) = connect_and_id(&server).await;
    let body = "x".repeat(100_000);
    let response = connections_call(&server, "POST", &id, body.as_bytes()).await;
    assert_eq!(response.status, 200);
    assert_eq!(next_text(&mut ws).await, body);
}

#[tokio::test]
async fn connections_post_over_128k_gets_413() {
    let server = spawn_default_server().await;
    let (_ws, id) = connect_and_id(&server).await;
    let body = vec![b'x'; 131_073];
    let response = connections_call(&server, "POST", &id, &body).await;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("PayloadTooLargeException")
    );
    let exactly = vec![b'x'; 131_072];
    let response = connections_call(&server, "POST", &id, &exactly).await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn connections_get_describes_the_connection() {
    let server = spawn_default_server().await;
    let mut events = server.events();
    let _ws = connect_with(&server.ws_url(), &[("User-Agent", "probe-test/1.0")]).await;
    let id = next_connection_id(&mut events).await;
    let response = connections_call(&server, "GET", &id, b"").await;
    assert_eq!(response.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(body["identity"]["userAgent"], "probe-test/1.0");
    for field in ["connectedAt", "lastActiveAt"] {
        let time = body[field].as_str().unwrap_or_else(|| panic!("{body}"));
        assert!(humantime::parse_rfc3339(time).is_ok(), "{field}: {time}");
        assert!(time.ends_with('Z') && time.len() == 24, "{field}: {time}");
    }
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["connectedAt", "identity", "lastActiveAt"]);
}

#[tokio::test]
async fn connections_delete_closes_with_1000_and_the_id_is_gone_after() {
    let server = spawn_default_server().await;
    let mut events = server.events();
    let (mut ws, id) = connect_and_id(&server).await;
    let encoded = format!("/dev/@connections/{}", id.replace('=', "%3D"));
    let response = http(server.addr(), "DELETE", &encoded, &[], b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    assert_eq!(disconnect_code(&mut events, &id).await, 1000);
    for method in ["GET", "POST", "DELETE"] {
        let response = connections_call(&server, method, &id, b"x").await;
        assert_eq!(response.status, 410, "{method}");
        assert_eq!(
            response.header("x-amzn-errortype"),
            Some("GoneException"),
            "{method}"
        );
    }
}

#[tokio::test]
async fn unknown_ids_get_410_gone() {
    let server = spawn_default_server().await;
    for method in ["GET", "POST", "DELETE"] {
        let response = http(
            server.addr(),
            method,
            "/dev/@connections/AAAAAAAAAAAAAAA=",
            &[],
            b"x",
        )
        .await;
        assert_eq!(response.status, 410, "{method}");
        assert_eq!(response.header("x-amzn-errortype"), Some("GoneException"));
    }
}

#[tokio::test]
async fn a_connection_closed_by_its_client_is_gone() {
    let server = spawn_default_server().await;
    let mut events = server.events();
    let (mut ws, id) = connect_and_id(&server).await;
    within("the close", ws.close(None)).await.unwrap();
    assert_eq!(disconnect_code(&mut events, &id).await, 1005);
    let response = connections_call(&server, "POST", &id, b"x").await;
    assert_eq!(response.status, 410);
}

// 7. Limits and close codes.

#[tokio::test]
async fn a_frame_over_32k_closes_with_1009() {
    let server = spawn_default_server().await;
    let mut events = server.events();
    let (mut ws, id) = connect_and_id(&server).await;
    // Exactly the limit is fine.
    let body = "y".repeat(32_768 - r#"{"action":"send","body":""}"#.len());
    send_text(&mut ws, &format!(r#"{{"action":"send","body":"{body}"}}"#)).await;
    assert_eq!(next_text(&mut ws).await.len(), body.len() + 2);
    send_text(&mut ws, &"z".repeat(32_769)).await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    assert_eq!(disconnect_code(&mut events, &id).await, 1009);
}

#[tokio::test]
async fn a_message_over_the_limit_in_small_frames_closes_with_1009() {
    let config = ServeConfig {
        max_frame_size: 1000,
        max_message_size: 4000,
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut ws = connect(&server.ws_url()).await;
    let first = Frame::message(vec![b'a'; 1000], OpCode::Data(Data::Text), false);
    send_message(&mut ws, Message::Frame(first)).await;
    for _ in 0..4 {
        let more = Frame::message(vec![b'a'; 1000], OpCode::Data(Data::Continue), false);
        send_message(&mut ws, Message::Frame(more)).await;
    }
    assert_eq!(expect_close(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let server = spawn_default_server().await;
    let mut ws = connect(&server.ws_url()).await;
    send_message(&mut ws, Message::binary(vec![1, 2, 3])).await;
    assert_eq!(expect_close(&mut ws).await.0, 1003);
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let server = spawn_default_server().await;
    let mut ws = connect(&server.ws_url()).await;
    let frame = Frame::message(vec![b'a', 0xff, 0xfe], OpCode::Data(Data::Text), true);
    send_message(&mut ws, Message::Frame(frame)).await;
    assert_eq!(expect_close(&mut ws).await.0, 1007);
}

#[tokio::test]
async fn idle_connections_close_with_1001_and_messages_keep_them_alive() {
    let config = ServeConfig {
        idle_timeout: Duration::from_millis(500),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut events = server.events();
    let (mut ws, id) = connect_and_id(&server).await;
    let started = std::time::Instant::now();
    let mut echoes = 0;
    // Each message comes well before the idle timeout, so the connection lives on.
    while started.elapsed() < Duration::from_millis(1000) {
        send_text(&mut ws, r#"{"action":"send","body":0}"#).await;
        assert_eq!(next_text(&mut ws).await, "0");
        echoes += 1;
        let pause = tokio::time::sleep(Duration::from_millis(50));
        pause.await;
    }
    assert!(echoes > 3);
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1001, "Going away"));
    assert_eq!(disconnect_code(&mut events, &id).await, 1001);
}

#[tokio::test]
async fn pings_do_not_keep_an_idle_connection_alive() {
    let config = ServeConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut ws = connect(&server.ws_url()).await;
    // Ping and read the pong, over and over, until the server closes.
    let code = within("the idle close", async {
        loop {
            ws.send(Message::Ping(b"keepalive".to_vec().into()))
                .await
                .unwrap();
            match ws.next().await {
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(code, 1001);
}

#[tokio::test]
async fn the_maximum_duration_closes_with_1001_even_when_busy() {
    let config = ServeConfig {
        max_connection_duration: Duration::from_millis(300),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut ws = connect(&server.ws_url()).await;
    let close = within("the close", async {
        loop {
            send_text(&mut ws, r#"{"action":"send","body":0}"#).await;
            match next_message(&mut ws).await {
                Message::Close(Some(frame)) => return u16::from(frame.code),
                Message::Text(_) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close, 1001);
}

/// A client that sends but never reads fills the socket until the server's writes stall;
/// the maximum duration must still end the connection (and its task).
#[tokio::test]
async fn the_maximum_duration_ends_a_connection_whose_client_stopped_reading() {
    let config = ServeConfig {
        max_connection_duration: Duration::from_millis(300),
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut events = server.events();
    let (ws, id) = connect_and_id(&server).await;
    let (mut sink, _never_read) = ws.split();
    let message = format!(r#"{{"action":"send","body":"{}"}}"#, "x".repeat(30_000));
    let flood = tokio::spawn(async move {
        // Ends when the server drops the connection.
        while sink.send(Message::text(message.clone())).await.is_ok() {}
    });
    assert_eq!(disconnect_code(&mut events, &id).await, 1001);
    within("the flood to end", flood).await.unwrap();
}

#[tokio::test]
async fn pings_are_answered_with_pongs() {
    let server = spawn_default_server().await;
    let mut ws = connect(&server.ws_url()).await;
    within(
        "a ping",
        ws.send(Message::Ping(b"are you there".to_vec().into())),
    )
    .await
    .unwrap();
    let pong = within("a pong", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Pong(data))) => return data,
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(&pong[..], b"are you there");
}

// 9. Shutdown.

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let server = spawn_default_server().await;
    let mut first = connect(&server.ws_url()).await;
    let mut second = connect(&server.ws_url()).await;
    within("the shutdown", server.shutdown()).await;
    assert_eq!(
        expect_close(&mut first).await,
        (1001, "Going away".to_owned())
    );
    assert_eq!(expect_close(&mut second).await.0, 1001);
}

// 10. Bad input.

#[tokio::test]
async fn malformed_upgrades_get_400() {
    let server = spawn_default_server().await;
    let addr = server.addr();
    let missing_key = format!(
        "GET /dev HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let bad_version = format!(
        "GET /dev HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let short_key = format!(
        "GET /dev HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    for request in [missing_key, bad_version, short_key] {
        let response = raw_http(addr, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{request}");
    }
    let garbage = raw_http(addr, b"\x01\x02 not http at all\r\n\r\n").await;
    assert_eq!(garbage.status, 400);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let server = spawn_default_server().await;
    let addr = server.addr();
    let request = format!(
        "GET /dev HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let response = raw_http(addr, request.as_bytes()).await;
    assert_eq!(response.status, 431);
}

#[tokio::test]
async fn a_client_vanishing_mid_frame_is_a_disconnect() {
    let server = spawn_default_server().await;
    let mut events = server.events();
    let (mut ws, id) = connect_and_id(&server).await;
    let MaybeTlsStream::Plain(socket) = ws.get_mut() else {
        panic!("a plain TCP connection was expected");
    };
    // A masked text frame header announcing 100 bytes, then only 3 of them.
    socket
        .write_all(&[0x81, 0x80 | 100, 1, 2, 3, 4, b'a', b'b', b'c'])
        .await
        .unwrap();
    drop(ws);
    assert_eq!(disconnect_code(&mut events, &id).await, 1006);
    // The server is fine afterwards.
    let mut other = connect(&server.ws_url()).await;
    send_text(&mut other, r#"{"action":"send","body":"ok"}"#).await;
    assert_eq!(next_text(&mut other).await, r#""ok""#);
}

// 8. Logs.

#[tokio::test]
async fn every_event_is_logged_once_without_secrets() {
    let (log, capture) = LogSink::capture();
    let config = ServeConfig {
        log,
        ..auth_config()
    };
    let server = spawn_server(config).await;
    let mut events = server.events();
    let good = [
        ("x-api-key", "key-one"),
        ("Authorization", "Bearer token-abc"),
    ];
    let _ = refused(
        &server.ws_url(),
        &[
            ("x-api-key", "key-one"),
            ("Authorization", "Bearer wrong-secret"),
        ],
    )
    .await;
    let mut ws = connect_with(&server.ws_url(), &good).await;
    let id = next_connection_id(&mut events).await;
    send_text(&mut ws, r#"{"action":"send","body":"token-abc"}"#).await;
    next_text(&mut ws).await;
    let response = connections_call(&server, "GET", &id, b"").await;
    assert_eq!(response.status, 200);
    within("the close", ws.close(None)).await.unwrap();
    disconnect_code(&mut events, &id).await;

    let lines = capture.lines();
    let count = |event: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(" {event} ")))
            .count()
    };
    assert_eq!(count("REJECT"), 1, "{lines:#?}");
    assert_eq!(count("CONNECT"), 1, "{lines:#?}");
    assert_eq!(count("MESSAGE"), 1, "{lines:#?}");
    assert_eq!(count("MANAGE"), 1, "{lines:#?}");
    assert_eq!(count("DISCONNECT"), 1, "{lines:#?}");
    for line in &lines {
        for secret in ["key-one", "key-two", "token-abc", "wrong-secret"] {
            assert!(!line.contains(secret), "{line}");
        }
        assert!(line.contains("requestId="), "{line}");
        assert!(line.contains(" duration="), "{line}");
    }
    let connect_line = lines.iter().find(|l| l.contains(" CONNECT ")).unwrap();
    assert!(
        connect_line.contains(&format!("connectionId={id}")),
        "{connect_line}"
    );
    let message_line = lines.iter().find(|l| l.contains(" MESSAGE ")).unwrap();
    assert!(message_line.contains("routeKey=send"), "{message_line}");
    let reject_line = lines.iter().find(|l| l.contains(" REJECT ")).unwrap();
    assert!(reject_line.contains("status=401"), "{reject_line}");
    let disconnect_line = lines.iter().find(|l| l.contains(" DISCONNECT ")).unwrap();
    assert!(disconnect_line.contains("code=1005"), "{disconnect_line}");
}

#[tokio::test]
async fn json_log_lines_are_json_objects() {
    let (log, capture) = LogSink::capture();
    let config = ServeConfig {
        log,
        log_format: LogFormat::Json,
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut events = server.events();
    let (mut ws, id) = connect_and_id(&server).await;
    within("the close", ws.close(None)).await.unwrap();
    disconnect_code(&mut events, &id).await;
    let lines = capture.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["event"], "CONNECT");
    assert_eq!(first["connectionId"], id.as_str());
    assert!(first["durationMs"].is_number());
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["event"], "DISCONNECT");
    assert_eq!(second["code"], 1005);
}

// The real binary.

#[tokio::test]
async fn the_binary_prints_its_urls_serves_and_exits_0_on_sigterm() {
    let mut process = ServeProcess::start(&["--token", "bin-token", "--log-format", "json"]);
    assert!(process.connections_url.starts_with("http://127.0.0.1:"));
    assert!(process.connections_url.ends_with("/dev/@connections"));
    let (status, _) = refused(&process.ws_url, &[]).await;
    assert_eq!(status, 401);
    let mut ws = connect_with(&process.ws_url, &[("Authorization", "Bearer bin-token")]).await;
    send_text(&mut ws, r#"{"action":"send","body":"Hello World!"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""Hello World!""#);
    // Log lines follow the URLs, one per event.
    let reject: serde_json::Value = serde_json::from_str(&process.next_line()).unwrap();
    assert_eq!(reject["event"], "REJECT");
    process.signal("TERM");
    assert_eq!(expect_close(&mut ws).await.0, 1001);
    assert_eq!(process.wait_exit(), Some(0));
}

#[tokio::test]
async fn the_binary_exits_0_on_sigint() {
    let mut process = ServeProcess::start(&[
        "--quiet",
        "--route-selection-expression",
        "$request.body.message",
    ]);
    let mut ws = connect(&process.ws_url).await;
    send_text(&mut ws, r#"{"message": "send", "body": "Hello World!"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""Hello World!""#);
    let started = std::time::Instant::now();
    process.signal("INT");
    assert_eq!(expect_close(&mut ws).await.0, 1001);
    assert_eq!(process.wait_exit(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_binary_refuses_a_bad_route_with_exit_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(["serve", "--listen", "127.0.0.1:0", "--route", "chat=shout"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("chat=shout"));
}

// TLS.

#[tokio::test]
async fn serves_wss_with_a_certificate() {
    let (server, certificate) = spawn_tls_server(ServeConfig::default()).await;
    assert!(server.ws_url().starts_with("wss://127.0.0.1:"));
    assert!(server.connections_url().starts_with("https://127.0.0.1:"));
    let mut ws = connect_tls(&server.ws_url(), &certificate).await.unwrap();
    assert_eq!(
        tls_echo(&mut ws, r#"{"action":"send","body":"secure"}"#).await,
        r#""secure""#
    );
    // A client that does not trust the certificate fails the TLS handshake.
    let stranger = TestCertificate::new();
    assert!(connect_tls(&server.ws_url(), &stranger).await.is_err());
}

#[tokio::test]
async fn the_binary_serves_tls_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = TestCertificate::new();
    let (cert, key) = certificate.write_to(dir.path());
    let process = ServeProcess::start(&[
        "--quiet",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(process.ws_url.starts_with("wss://"), "{}", process.ws_url);
    let mut ws = connect_tls(&process.ws_url, &certificate).await.unwrap();
    assert_eq!(
        tls_echo(&mut ws, r#"{"action":"send","body":1}"#).await,
        "1"
    );
}

// @connections HTTP hygiene: SDK clients keep their connections alive.

#[tokio::test]
async fn a_413_leaves_the_keep_alive_connection_usable() {
    let server = spawn_default_server().await;
    let (mut ws, id) = connect_and_id(&server).await;
    let path = connection_path(&server, &id);
    let addr = server.addr();
    let responses = http_exchanges(
        addr,
        &[
            keep_alive_request(addr, "POST", &path, &vec![b'x'; 131_073]),
            keep_alive_request(addr, "POST", &path, b"after the 413"),
            keep_alive_request(addr, "GET", &path, b""),
        ],
    )
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [413, 200, 200]);
    assert_eq!(responses[0].header("connection"), None);
    assert_eq!(next_text(&mut ws).await, "after the 413");
    let ids: std::collections::HashSet<&str> = responses
        .iter()
        .map(|r| r.header("x-amzn-requestid").expect("x-amzn-RequestId"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| is_aws_id(id)), "{ids:?}");
}

#[tokio::test]
async fn every_connections_answer_carries_a_request_id() {
    let server = spawn_default_server().await;
    let (_ws, id) = connect_and_id(&server).await;
    for (method, id) in [
        ("GET", id.as_str()),
        ("POST", id.as_str()),
        ("DELETE", id.as_str()),
        ("DELETE", id.as_str()),
        ("PUT", "unknown"),
    ] {
        let response = connections_call(&server, method, id, b"x").await;
        let request_id = response.header("x-amzn-requestid").unwrap_or_default();
        assert!(is_aws_id(request_id), "{method}: {response:?}");
    }
}

#[tokio::test]
async fn answers_after_which_the_server_closes_say_connection_close() {
    let server = spawn_default_server().await;
    let (_ws, id) = connect_and_id(&server).await;
    let path = connection_path(&server, &id);
    let addr = server.addr();
    // Far more than the server reads to keep the connection: it answers at once.
    let huge = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10000000\r\n\r\n");
    let response = raw_http(addr, huge.as_bytes()).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    // A broken chunked body is a bad request, not a large one.
    let broken = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    );
    let response = raw_http(addr, broken.as_bytes()).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("BadRequestException")
    );
}

#[tokio::test]
async fn a_refused_connections_call_is_logged_with_its_reason() {
    let (log, capture) = LogSink::capture();
    let config = ServeConfig {
        log,
        iam_keys: vec![wsprobe_core::aws::IamKey::parse("AKIDLOCAL:local-secret").expect("a key")],
        ..ServeConfig::default()
    };
    let server = spawn_server(config).await;
    let mut events = server.events();
    let response = connections_call(&server, "GET", "R0oXAdfD0kwCH6w=", b"").await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("ForbiddenException")
    );
    wait_event(&mut events, |event| {
        matches!(event, ServeEvent::Managed { .. }).then_some(())
    })
    .await;
    let lines = capture.lines();
    let manage = lines
        .iter()
        .find(|l| l.contains(" MANAGE "))
        .expect("a MANAGE line");
    assert!(manage.contains("status=403"), "{manage}");
    assert!(
        manage.contains(r#"reason="SigV4: the request is not signed""#),
        "{manage}"
    );
    assert!(!manage.contains("local-secret"), "{manage}");
}

/// `serve` raises its soft open-file limit to the hard one at start (before, it kept the
/// soft limit it was given: often 1024, refusing clients far below what the system allows).
#[cfg(target_os = "linux")]
#[test]
fn the_binary_raises_its_open_file_limit() {
    let process = ServeProcess::start_with_open_file_limit(&["--quiet"], 256, 2048);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", process.child.id()))
        .expect("the process's limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["2048", "2048"], "{line}");
}

/// At the file-descriptor limit, `serve` says why it refuses everyone, once per burst
/// (before, it refused them silently).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn running_out_of_file_descriptors_is_logged() {
    let mut process = ServeProcess::start_with_open_file_limit(&[], 48, 48);
    let addr: std::net::SocketAddr = process
        .ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|host| host.parse().ok())
        .expect("the address in the URL");
    // More connections than descriptors: the kernel completes them (backlog), serve
    // cannot accept them all.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(socket) = tokio::net::TcpStream::connect(addr).await {
            held.push(socket);
        }
    }
    let line = tokio::task::spawn_blocking(move || {
        let line = loop {
            let line = process.next_line();
            if line.contains("ACCEPT_FAILED") {
                break line;
            }
        };
        (line, process)
    })
    .await
    .expect("reading the log");
    let (line, _process) = line;
    assert!(line.contains("out of file descriptors"), "{line}");
    assert!(line.contains("ulimit -n"), "{line}");
    drop(held);
}
