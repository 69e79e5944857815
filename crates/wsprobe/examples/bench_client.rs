//! Benchmark client (scripts/bench-serve.sh), the same for every server it measures.
//!
//! Usage:
//!   bench_client echo URL CONNECTIONS SECONDS MESSAGE
//!       CONNECTIONS clients each send MESSAGE and wait for the reply, over and over, for
//!       SECONDS; prints `round_trips_per_second=N`.
//!   bench_client idle URL CONNECTIONS SECONDS
//!       opens CONNECTIONS idle connections, prints `ready N`, holds them for SECONDS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn usage() -> ! {
    eprintln!(
        "usage: bench_client echo URL CONNECTIONS SECONDS MESSAGE | idle URL CONNECTIONS SECONDS"
    );
    std::process::exit(2);
}

fn client_config() -> WebSocketConfig {
    // Small buffers: ten thousand client connections must fit beside the server.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        usage();
    }
    let url = args[2].clone();
    let connections: usize = args[3].parse().unwrap_or_else(|_| usage());
    let seconds: f64 = args[4].parse().unwrap_or_else(|_| usage());
    match args[1].as_str() {
        "echo" => {
            let message = args.get(5).cloned().unwrap_or_else(|| usage());
            echo(url, connections, Duration::from_secs_f64(seconds), message).await;
        }
        "idle" => idle(url, connections, Duration::from_secs_f64(seconds)).await,
        _ => usage(),
    }
}

async fn echo(url: String, connections: usize, length: Duration, message: String) {
    let total = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(&url, Some(client_config()), true)
                .await
                .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        clients.push(ws);
    }
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::new();
    for mut ws in clients {
        let total = total.clone();
        let message = message.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                if ws.send(Message::text(message.clone())).await.is_err() {
                    break;
                }
                match ws.next().await {
                    Some(Ok(Message::Text(_))) => done += 1,
                    _ => break,
                }
            }
            total.fetch_add(done, Ordering::Relaxed);
            let _ = ws.close(None).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = total.load(Ordering::Relaxed) as f64 / elapsed;
    println!("round_trips_per_second={rate:.0}");
}

async fn idle(url: String, connections: usize, hold: Duration) {
    // Not all at once: the listen backlog is finite. At most this many connects are under
    // way (spawned), so the peak memory is that of the open connections, not of ten
    // thousand connect futures waiting for their turn (scripts/bench-load.sh compares it).
    const AT_ONCE: usize = 256;
    let mut connecting = tokio::task::JoinSet::new();
    let mut open = Vec::with_capacity(connections);
    let mut started = 0;
    while started < connections || !connecting.is_empty() {
        while started < connections && connecting.len() < AT_ONCE {
            let url = url.clone();
            connecting.spawn(async move {
                tokio_tungstenite::connect_async_with_config(&url, Some(client_config()), false)
                    .await
                    .ok()
                    .map(|(ws, _)| ws)
            });
            started += 1;
        }
        if let Some(Ok(Some(ws))) = connecting.join_next().await {
            open.push(ws);
        }
    }
    println!("ready {}", open.len());
    tokio::time::sleep(hold).await;
    drop(open);
}
