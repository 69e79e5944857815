//! The accept loop: HTTP/1.1 on each accepted socket (hyper, upgrades kept), with the
//! peer address handed to the router, and malformed or oversized request heads answered
//! 400 / 431 by hyper and logged as REJECT.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{ServeEvent, ServerState};

/// Largest request head (request line and headers) accepted; bigger gets 431. hyper's
/// smallest allowed value is 8 KiB; API Gateway's REST limit is 10 KiB of headers.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The peer address of the TCP connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Accepts connections until the server shuts down.
pub async fn accept_loop(listener: TcpListener, router: Router, state: ServerState) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(true);
    let mut shutdown = state.shutdown_signal();
    // Whether the last accept failed: a burst of failures is logged once, at its start.
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                failing = false;
                // Echo latency matters more than packet count.
                let _ = socket.set_nodelay(true);
                let http = http.clone();
                let router = router.clone();
                let state = state.clone();
                match &state.config().tls {
                    None => {
                        tokio::spawn(serve_http(http, socket, peer, router, state));
                    }
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                        tokio::spawn(async move {
                            let started = Instant::now();
                            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(socket))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    serve_http(http, stream, peer, router, state).await
                                }
                                _ => state.emit(ServeEvent::Rejected {
                                    request_id: state.next_id(),
                                    status: 0,
                                    reason: "TLS handshake failed".to_owned(),
                                    source_ip: Some(peer.ip()),
                                    duration: started.elapsed(),
                                }),
                            }
                        });
                    }
                }
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                if !failing {
                    failing = true;
                    state.emit(ServeEvent::AcceptFailed {
                        reason: accept_failure(&error),
                    });
                }
                // Out of file descriptors or similar: wait a moment instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Errors of one pending connection, not of the listener.
/// Why accepting failed, with what to do when it is the file-descriptor limit.
fn accept_failure(error: &std::io::Error) -> String {
    /// EMFILE (this process) and ENFILE (the whole system) on Linux and the BSDs.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    match error.raw_os_error() {
        Some(EMFILE | ENFILE) => format!(
            "out of file descriptors ({error}): new connections wait in the backlog until \
             some close; raise the limit (`ulimit -n`)"
        ),
        _ => format!("accepting a connection failed: {error}"),
    }
}

fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn serve_http<I>(
    http: http1::Builder,
    socket: I,
    peer: SocketAddr,
    router: Router,
    state: ServerState,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let service = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        hyper::service::Service::call(&service, request)
    });
    let connection = http
        .serve_connection(TokioIo::new(socket), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut shutdown = state.shutdown_signal();
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // hyper has already answered these; they are worth a log line.
        let rejection = if error.is_parse_too_large() {
            Some((431, "request head too large"))
        } else if error.is_parse() {
            Some((400, "malformed HTTP request"))
        } else if error.is_timeout() {
            // hyper drops the connection without an answer: status 0.
            Some((0, "request head not received in time"))
        } else {
            None
        };
        if let Some((status, reason)) = rejection {
            state.emit(ServeEvent::Rejected {
                request_id: state.next_id(),
                status,
                reason: reason.to_owned(),
                source_ip: Some(peer.ip()),
                duration: started.elapsed(),
            });
        }
    }
}

/// Resolves once the server is shutting down.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The state (and its sender) outlives every task that watches it.
        std::future::pending::<()>().await;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is
/// called, not when it is first awaited, so a signal sent right after the start-up
/// lines are printed is not missed.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            // A signal that cannot be watched must not look like one that arrived.
            let wait = |installed: std::io::Result<tokio::signal::unix::Signal>| async move {
                match installed {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {}
                _ = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
