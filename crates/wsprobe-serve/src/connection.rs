//! One task per connection: reads frames, routes text messages, writes what the
//! `@connections` API and broadcasts queue for it, and enforces API Gateway's limits —
//! 1009 for a frame or message too big, 1003 for a binary frame, 1007 for invalid UTF-8,
//! 1001 "Going away" on idle timeout, maximum duration and shutdown, 1000 on
//! `@connections` DELETE. These end a connection even while a write is stalled on a
//! client that stopped reading.
//!
//! After it sends a close frame the task half-closes the socket and reads until the
//! client is done (briefly), so the close frame is never lost to a TCP reset.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::lambda::{self, ConnectionContext};
use crate::registry::{ConnectionInfo, Outbound};
use crate::routing::{self, RouteBehaviour, Selection};
use crate::{ServeEvent, ServerState, TaskGuard};

/// How long a closing connection waits for the client to finish (its close frame, then
/// its end of the TCP connection). Short, so a shutdown finishes within a second.
const LINGER: Duration = Duration::from_millis(500);

/// The read buffer of a connection: small, so ten thousand idle connections stay cheap;
/// bigger messages grow it as they arrive.
const READ_BUFFER: usize = 4 * 1024;

const GOING_AWAY: &str = "Going away";

/// Everything a connection task starts with.
pub struct Connection {
    /// The server it belongs to.
    pub state: ServerState,
    /// Its connection id.
    pub id: String,
    /// What `@connections` GET reports; touched on every inbound message.
    pub info: Arc<ConnectionInfo>,
    /// Frames queued by `@connections` POST and broadcasts.
    pub inbox: mpsc::Receiver<Outbound>,
    /// Notified by `@connections` DELETE.
    pub close: Arc<Notify>,
    /// What Lambda events of this connection share; `None` without integrations.
    pub lambda: Option<Arc<ConnectionContext>>,
    /// Keeps the task counted until it ends, so a shutdown can wait for it.
    pub _guard: TaskGuard,
}

/// Why a connection ends.
enum End {
    /// The server closes with this code and reason.
    Close(u16, &'static str),
    /// The client sent a close frame (its code, 1005 when it had none) and got the reply.
    ClosedByClient(u16, String),
    /// The client vanished without a close frame.
    Vanished,
}

/// Runs a connection from its upgrade to its end, then reports the DISCONNECT.
pub async fn run(connection: Connection, on_upgrade: hyper::upgrade::OnUpgrade) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(_) => {
            let state = connection.state.clone();
            finish(
                &state,
                &connection.id,
                &connection.info,
                connection.lambda.as_ref(),
                1006,
                "Upgrade failed",
            );
            return;
        }
    };
    let config = websocket_config(connection.state.config());
    // The accept loop serves plain TCP, so this is the TCP stream itself and the task
    // owns it directly; anything else (another server driving the router) still works.
    match upgraded.downcast::<hyper_util::rt::TokioIo<TcpStream>>() {
        Ok(parts) => {
            let socket = parts.io.into_inner();
            // Copied out so hyper's whole read buffer is freed now, not held for the life
            // of the connection.
            let already_read = parts.read_buf.to_vec();
            drop(parts.read_buf);
            let ws = WebSocketStream::from_partially_read(
                socket,
                already_read,
                Role::Server,
                Some(config),
            )
            .await;
            drive(ws, connection).await;
        }
        Err(upgraded) => {
            let ws = WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            drive(ws, connection).await;
        }
    }
}

fn websocket_config(config: &crate::ServeConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Replies are written as they are made; nothing waits in a buffer.
        .write_buffer_size(0)
        .max_frame_size(Some(config.max_frame_size))
        .max_message_size(Some(config.max_message_size))
}

async fn drive<S>(mut ws: WebSocketStream<S>, connection: Connection)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Connection {
        state,
        id,
        info,
        mut inbox,
        close,
        lambda,
        ..
    } = connection;
    let config = state.config();
    let idle = tokio::time::sleep(config.idle_timeout);
    let max_age = tokio::time::sleep(config.max_connection_duration);
    let mut shutdown = state.shutdown_signal();
    // Made once and polled again on every turn, so a message costs no waiter
    // registration on these signals.
    let stop = crate::server::stopped(&mut shutdown);
    let closed = close.notified();
    tokio::pin!(idle, max_age, stop, closed);
    // The idle timer is not pushed back on every message: when it fires, it is re-armed
    // from the last inbound message if that came later.
    let mut last_inbound = tokio::time::Instant::now();
    // A write stalls for as long as the client does not read; what ends the connection
    // must end it then too, or a client that stopped reading keeps it (and its task)
    // forever.
    macro_rules! ended {
        () => {
            server_end(
                stop.as_mut(),
                closed.as_mut(),
                max_age.as_mut(),
                idle.as_mut(),
                last_inbound + config.idle_timeout,
            )
        };
    }
    macro_rules! unless_ended {
        ($write:expr) => {
            tokio::select! {
                biased;
                end = ended!() => break end,
                written = $write => written,
            }
        };
    }

    let end = loop {
        tokio::select! {
            // Signals first: a client flooding messages must not starve them.
            biased;
            end = ended!() => break end,
            queued = inbox.recv() => {
                let sent = match queued {
                    Some(Outbound::Text(text)) => unless_ended!(send_text(
                        &mut ws,
                        Utf8Bytes::from(text),
                        config.max_frame_size
                    )),
                    Some(Outbound::Binary(data)) => unless_ended!(ws.send(Message::Binary(data))),
                    // Every sender is gone: the registry dropped this connection.
                    None => break End::Close(1000, ""),
                };
                if sent.is_err() {
                    break End::Vanished;
                }
            }
            incoming = ws.next() => match incoming {
                None => break End::Vanished,
                Some(Ok(Message::Text(text))) => {
                    last_inbound = tokio::time::Instant::now();
                    info.touch();
                    let handled =
                        unless_ended!(on_text(&mut ws, &state, &id, lambda.as_ref(), text));
                    if handled.is_err() {
                        break End::Vanished;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    break End::Close(1003, "Binary frames are not supported");
                }
                // Pongs are queued by tungstenite and written on the next read; pings
                // do not count as activity for the idle timeout [U].
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(frame) => (u16::from(frame.code), frame.reason.to_string()),
                        None => (1005, "Client-side close frame status not set".to_owned()),
                    };
                    state.registry().remove(&id);
                    // Reading on writes tungstenite's close reply and ends the stream.
                    let _ = tokio::time::timeout(LINGER, ws.next()).await;
                    break End::ClosedByClient(code, reason);
                }
                Some(Err(error)) => break end_for_error(&error),
            },
        }
    };

    let (code, reason) = match end {
        End::Close(code, reason) => {
            // Gone from the registry first, so @connections answers 410 from now on.
            state.registry().remove(&id);
            close_with(&mut ws, code, reason).await;
            (code, reason.to_owned())
        }
        End::ClosedByClient(code, reason) => (code, reason),
        End::Vanished => (1006, "Connection closed abnormally".to_owned()),
    };
    drop(ws);
    finish(&state, &id, &info, lambda.as_ref(), code, &reason);
}

/// Resolves when the server ends the connection: on shutdown, `@connections` DELETE, the
/// maximum duration, or when the idle timer fires after `idle_due` (the idle timer fires
/// early when messages came in meanwhile; it is re-armed then).
async fn server_end(
    mut stop: Pin<&mut impl Future<Output = ()>>,
    mut closed: Pin<&mut impl Future<Output = ()>>,
    mut max_age: Pin<&mut Sleep>,
    mut idle: Pin<&mut Sleep>,
    idle_due: tokio::time::Instant,
) -> End {
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return End::Close(1001, GOING_AWAY),
            _ = &mut closed => return End::Close(1000, ""),
            _ = &mut max_age => return End::Close(1001, GOING_AWAY),
            _ = &mut idle => {
                if tokio::time::Instant::now() >= idle_due {
                    return End::Close(1001, GOING_AWAY);
                }
                idle.as_mut().reset(idle_due);
            }
        }
    }
}

/// The close code a read error calls for.
fn end_for_error(error: &WsError) -> End {
    match error {
        WsError::Capacity(_) => End::Close(1009, "Message too big"),
        WsError::Utf8(_) => End::Close(1007, "Invalid frame payload data"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::Io(_)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => End::Vanished,
        WsError::Protocol(_) => End::Close(1002, "Protocol error"),
        _ => End::Vanished,
    }
}

/// Removes the connection, reports the DISCONNECT, and hands it to the `$disconnect`
/// integration, if there is one (best effort, as in API Gateway: its answer is ignored).
fn finish(
    state: &ServerState,
    id: &str,
    info: &ConnectionInfo,
    lambda: Option<&Arc<ConnectionContext>>,
    code: u16,
    reason: &str,
) {
    state.registry().remove(id);
    let lived = info.connected_at.elapsed().unwrap_or_default();
    let request_id = state.next_id();
    if let (Some(context), Some(index)) = (lambda, state.config().integrations.disconnect) {
        // A close by `@connections` DELETE (or the server's own normal close) reads as
        // API Gateway reports it.
        let reason = match (code, reason) {
            (1000, "") => "Connection Closed Normally",
            _ => reason,
        };
        let event = lambda::disconnect_event(context, &request_id, code, reason);
        let invocation = Invocation {
            state: state.clone(),
            context: context.clone(),
            index,
            route_key: "$disconnect".to_owned(),
            request_id: request_id.clone(),
            event,
        };
        tokio::spawn(invocation.run());
    }
    state.emit(ServeEvent::Disconnected {
        connection_id: id.to_owned(),
        request_id,
        code,
        reason: reason.to_owned(),
        duration: lived,
    });
}

/// One Lambda invocation for a connection, run in its own task so the connection keeps
/// reading (API Gateway's replies are asynchronous too).
struct Invocation {
    state: ServerState,
    context: Arc<ConnectionContext>,
    /// The integration, an index into `Integrations::endpoints`.
    index: usize,
    route_key: String,
    request_id: String,
    event: Value,
}

impl Invocation {
    /// Invokes the integration; for a message route, sends the `body` back when the route
    /// has a route response, or the `Internal server error` frame when the invocation
    /// failed. `$disconnect` answers go nowhere.
    async fn run(self) {
        let integrations = &self.state.config().integrations;
        let started = Instant::now();
        let outcome = self.state.invoke(self.index, &self.event).await;
        let event = ServeEvent::Integration {
            connection_id: self.context.connection_id.clone(),
            request_id: self.request_id.clone(),
            route_key: self.route_key.clone(),
            status_code: outcome.as_ref().ok().and_then(|r| r.status_code),
            error: outcome.as_ref().err().map(ToString::to_string),
            duration: started.elapsed(),
        };
        if self.route_key == "$disconnect" {
            self.state.emit(event);
            return;
        }
        let reply = match outcome {
            Ok(response) if integrations.route_responses.contains(&self.route_key) => response.body,
            // A one-way route: nothing goes back, whatever the handler answered.
            Ok(_) => None,
            // Sent on one-way routes as well [U].
            Err(_) => Some(routing::gateway_error_frame(
                "Internal server error",
                &self.context.connection_id,
                &self.request_id,
            )),
        };
        if let Some(reply) = reply
            && let Some(connection) = self.state.registry().get(&self.context.connection_id)
        {
            // The connection's task drains the queue; a gone connection drops it.
            let _ = connection.outbound.send(Outbound::Text(reply)).await;
        }
        // After the reply is queued: an observer that saw this event knows that any
        // reply is ahead of what the connection sends next.
        self.state.emit(event);
    }
}

/// Sends a close frame, then half-closes and drains the socket until the client has
/// answered and hung up, or [`LINGER`] has passed.
async fn close_with<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    };
    let deadline = tokio::time::Instant::now() + LINGER;
    if tokio::time::timeout_at(deadline, ws.send(Message::Close(Some(frame))))
        .await
        .is_err()
    {
        return;
    }
    // Straight on the socket: after a limit breach the frame parser's state is unusable,
    // and unread bytes left in the socket would turn the close into a reset.
    let socket = ws.get_mut();
    let _ = tokio::time::timeout_at(deadline, async {
        let _ = socket.shutdown().await;
        let mut sink = vec![0u8; 4096];
        while let Ok(read) = socket.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

/// Routes one text message and sends what its route sends.
async fn on_text<S>(
    ws: &mut WebSocketStream<S>,
    state: &ServerState,
    connection_id: &str,
    lambda: Option<&Arc<ConnectionContext>>,
    text: Utf8Bytes,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let config = state.config();
    // A request id costs a little; only error frames and observers need one.
    let mut request_id: Option<String> = None;
    let mut error_frame = |message: &str| {
        let id = request_id.get_or_insert_with(|| state.next_id());
        Utf8Bytes::from(routing::gateway_error_frame(message, connection_id, id))
    };
    let parsed: Option<Value> = serde_json::from_str(text.as_str()).ok();
    let selection = routing::select(
        parsed.as_ref(),
        &config.route_selection_expression,
        &config.routes,
        config.default_route,
    );
    let bytes = text.len();
    let reply = match &selection {
        Selection::NoRoute => Some(error_frame("Forbidden")),
        Selection::Route { behaviour, .. } | Selection::Default(behaviour) => match behaviour {
            RouteBehaviour::Echo => Some(text),
            // The sample Lambda throws on a message without a body.
            RouteBehaviour::EchoBody => Some(match routing::body_as_json(parsed.as_ref()) {
                Some(body) => Utf8Bytes::from(body),
                None => error_frame("Internal server error"),
            }),
            RouteBehaviour::Broadcast => match routing::body_as_json(parsed.as_ref()) {
                Some(body) => {
                    for sender in state.registry().senders() {
                        // A client that does not keep up misses the message, as it
                        // would when API Gateway answers the Lambda's post with 429.
                        let _ = sender.try_send(Outbound::Text(body.clone()));
                    }
                    None
                }
                None => Some(error_frame("Internal server error")),
            },
            RouteBehaviour::Lambda(index) => {
                let request_id = request_id.get_or_insert_with(|| state.next_id()).clone();
                match lambda {
                    Some(context) => {
                        let route_key = selection.route_key().unwrap_or("$default").to_owned();
                        let event = lambda::message_event(
                            context,
                            &route_key,
                            &request_id,
                            &state.next_id(),
                            text.as_str(),
                        );
                        let invocation = Invocation {
                            state: state.clone(),
                            context: context.clone(),
                            index: *index,
                            route_key,
                            request_id,
                            event,
                        };
                        tokio::spawn(invocation.run());
                        None
                    }
                    // Integrations always come with a context; without one, the route
                    // cannot run.
                    None => Some(Utf8Bytes::from(routing::gateway_error_frame(
                        "Internal server error",
                        connection_id,
                        &request_id,
                    ))),
                }
            }
            RouteBehaviour::Whoami => Some(Utf8Bytes::from(
                serde_json::json!({ "connectionId": connection_id }).to_string(),
            )),
        },
    };
    let result = match reply {
        Some(reply) => send_text(ws, reply, config.max_frame_size).await,
        None => Ok(()),
    };
    if state.is_observed() {
        state.emit(ServeEvent::Message {
            connection_id: connection_id.to_owned(),
            request_id: request_id.unwrap_or_else(|| state.next_id()),
            route_key: selection.route_key().map(str::to_owned),
            bytes,
            duration: started.elapsed(),
        });
    }
    result
}

/// Sends a text message, split into frames no bigger than the frame limit (API Gateway
/// applies its 32 KB frame limit to what it sends as well [U]).
async fn send_text<S>(
    ws: &mut WebSocketStream<S>,
    text: Utf8Bytes,
    frame_limit: usize,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if text.len() <= frame_limit {
        return ws.send(Message::Text(text)).await;
    }
    let data: Bytes = text.into();
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + frame_limit).min(data.len());
        let opcode = if offset == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(data.slice(offset..end), opcode, end == data.len());
        ws.feed(Message::Frame(frame)).await?;
        offset = end;
    }
    ws.flush().await
}
