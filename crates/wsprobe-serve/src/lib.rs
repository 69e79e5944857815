//! wsprobe-serve: the reference backend, an API Gateway WebSocket stage running the
//! sample echo app, as far as a client can observe (`shared/spec/apigw-websocket.md`).
//!
//! [`app`] builds the router and its state, [`serve`] runs it on a listener until a
//! signal, and [`spawn`] starts it on a port in a task and hands back a [`RunningServer`],
//! which `wsprobe serve`, `wsprobe connect` without a URL, and tests use. It is configured
//! with its own type, [`ServeConfig`]; the binary lowers its flags into one. The files
//! follow a request:
//!
//! - `server.rs`: the accept loop (hyper HTTP/1.1, upgrades kept).
//! - `app.rs`: the router: stage path, handshake checks, the 101, other paths.
//! - `auth.rs`: `$connect` authorization (API keys, bearer tokens).
//! - `authorizer.rs`: `$connect` Lambda REQUEST authorizers: identity sources, policies.
//! - `connection.rs`: one task per connection: limits, timers, close codes.
//! - `routing.rs`: route selection and what each route does.
//! - `lambda.rs`: Lambda integrations: proxy events out, proxy responses back.
//! - `management.rs`: the `@connections` API.
//! - `registry.rs`: live connections by id, and id generation.
//! - `log.rs`: events and log lines.

mod app;
mod auth;
mod authorizer;
mod config;
mod connection;
mod lambda;
mod log;
mod management;
mod registry;
mod routing;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

pub use app::app;
pub use authorizer::{Authorizer, IdentitySource};
pub use config::{
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE, MAX_INTEGRATION_TIMEOUT,
    MIN_INTEGRATION_TIMEOUT, ServeConfig, self_signed_path,
};
pub use lambda::{DEFAULT_TIMEOUT as DEFAULT_INTEGRATION_TIMEOUT, Integrations};
pub use log::{LogCapture, LogFormat, LogSink, ServeEvent};
pub use routing::{RouteBehaviour, RouteTable, SelectionExpression};
pub use server::shutdown_signal;

use wsprobe_core::secret::Secret;

use registry::{IdGenerator, Registry};

/// How long a shutdown waits for connections to finish their close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(900);

/// How many events an observer may fall behind before it misses some.
const EVENT_BUFFER: usize = 4096;

/// Serves `config` on `listener` until SIGINT or SIGTERM, then closes every connection
/// with 1001 and returns.
pub async fn serve(listener: TcpListener, config: ServeConfig) -> std::io::Result<()> {
    let signal = server::shutdown_signal();
    let (router, state) = app(config);
    let accept = tokio::spawn(server::accept_loop(listener, router, state.clone()));
    signal.await;
    state.close_all(SHUTDOWN_GRACE).await;
    accept.abort();
    Ok(())
}

/// Binds `listen` (port 0 picks a free port) and serves `config` in a task.
pub async fn spawn(config: ServeConfig, listen: SocketAddr) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stage = config.stage.clone();
    let secure = config.tls.is_some();
    let (router, state) = app(config);
    let accept = tokio::spawn(server::accept_loop(listener, router, state.clone()));
    Ok(RunningServer {
        addr,
        stage,
        secure,
        state,
        accept,
    })
}

/// A server serving in a task. Dropping it stops accepting; [`RunningServer::shutdown`]
/// also closes every connection with 1001.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stage: String,
    /// Serving TLS: `wss://` and `https://`.
    secure: bool,
    state: ServerState,
    accept: JoinHandle<()>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where clients connect: `ws://127.0.0.1:PORT/dev` (`wss://` with TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}/{}", self.reachable_addr(), self.stage)
    }

    /// The `@connections` base URL: `http://127.0.0.1:PORT/dev/@connections` (`https://`
    /// with TLS).
    pub fn connections_url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!(
            "{scheme}://{}/{}/@connections",
            self.reachable_addr(),
            self.stage
        )
    }

    /// Events from now on. Subscribe before doing what should cause them.
    pub fn events(&self) -> broadcast::Receiver<ServeEvent> {
        self.state.events()
    }

    /// The router's state: configuration, live connection count, events.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// Stops accepting, closes every connection with 1001 "Going away", and returns when
    /// they are closed (or after a second at most).
    pub async fn shutdown(self) {
        self.accept.abort();
        self.state.close_all(SHUTDOWN_GRACE).await;
    }

    /// A wildcard listen address is reached through loopback.
    fn reachable_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        addr
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The shared state of a server: its configuration, live connections, ids, events and
/// shutdown signal. Cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    inner: Arc<Shared>,
}

struct Shared {
    config: ServeConfig,
    /// One per integration endpoint, in `config.integrations.endpoints` order.
    invokers: Vec<lambda::Invoker>,
    secrets: Vec<Secret>,
    registry: Registry,
    ids: IdGenerator,
    events: broadcast::Sender<ServeEvent>,
    /// Set once anyone subscribed, so an unobserved server never touches the event
    /// channel's lock on the message path.
    observed: AtomicBool,
    shutdown: watch::Sender<bool>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("stage", &self.inner.config.stage)
            .field("connections", &self.inner.registry.len())
            .finish_non_exhaustive()
    }
}

impl ServerState {
    fn new(config: ServeConfig) -> Self {
        let secrets = config.secrets().cloned().collect();
        let integrations = &config.integrations;
        let invokers = integrations
            .endpoints
            .iter()
            .map(|url| {
                lambda::Invoker::new(url.clone(), integrations.concurrency, lambda::QUEUE_BOUND)
            })
            .collect();
        Self {
            inner: Arc::new(Shared {
                invokers,
                config,
                secrets,
                registry: Registry::default(),
                ids: IdGenerator::default(),
                events: broadcast::channel(EVENT_BUFFER).0,
                observed: AtomicBool::new(false),
                shutdown: watch::channel(false).0,
                tasks: TaskTracker::default(),
            }),
        }
    }

    /// The configuration it serves.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// How many Lambda invocations wait in the endpoints' queues for a free slot
    /// (`--integration-concurrency`), over all endpoints.
    pub fn queued_invocations(&self) -> usize {
        self.inner
            .invokers
            .iter()
            .map(lambda::Invoker::waiting)
            .sum()
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<ServeEvent> {
        self.inner.observed.store(true, Ordering::Release);
        self.inner.events.subscribe()
    }

    /// Closes every connection with 1001 "Going away" and waits up to `grace` for their
    /// close handshakes. New handshakes are refused from then on.
    pub async fn close_all(&self, grace: Duration) {
        self.inner.shutdown.send_replace(true);
        self.inner.tasks.wait_idle(grace).await;
    }

    /// Invokes integration endpoint `index` through its queue and reads the proxy
    /// response.
    async fn invoke(
        &self,
        index: usize,
        event: &serde_json::Value,
    ) -> Result<lambda::ProxyResponse, lambda::InvokeError> {
        let answer = self.send(index, event).await?;
        lambda::parse_response(&answer.payload, answer.function_error)
    }

    /// Sends `event` to integration endpoint `index` through its queue.
    async fn send(
        &self,
        index: usize,
        event: &serde_json::Value,
    ) -> Result<lambda::Answer, lambda::InvokeError> {
        match self.inner.invokers.get(index) {
            Some(invoker) => {
                invoker
                    .send(event, self.inner.config.integrations.timeout)
                    .await
            }
            None => Err(lambda::InvokeError::Unreachable {
                url: format!("integration #{index}"),
                reason: "no such integration".to_owned(),
            }),
        }
    }

    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn next_id(&self) -> String {
        self.inner.ids.next_id()
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    fn track_task(&self) -> TaskGuard {
        self.inner.tasks.enter()
    }

    /// Whether events go anywhere (a log sink or an observer), so the hot path can skip
    /// building them.
    fn is_observed(&self) -> bool {
        !self.inner.config.log.is_off() || self.inner.observed.load(Ordering::Acquire)
    }

    /// Logs an event and hands it to observers.
    fn emit(&self, event: ServeEvent) {
        let shared = &*self.inner;
        log::write(
            &shared.config.log,
            shared.config.log_format,
            &shared.secrets,
            &event,
        );
        if shared.observed.load(Ordering::Acquire) {
            // No receiver left is fine: nobody is watching any more.
            let _ = shared.events.send(event);
        }
    }
}

/// Counts connection tasks, so a shutdown can wait for their close handshakes.
#[derive(Debug, Default)]
struct TaskTracker {
    count: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

/// Held by a connection task; dropping it counts the task out.
struct TaskGuard {
    count: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl TaskTracker {
    fn enter(&self) -> TaskGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        TaskGuard {
            count: self.count.clone(),
            idle: self.idle.clone(),
        }
    }

    async fn wait_idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so a task ending in between is not missed.
            idle.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}
