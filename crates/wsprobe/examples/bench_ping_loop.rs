//! Benchmark helper (`--features bench`): the ceiling for `wsprobe load`'s closed model.
//! N tokio-tungstenite connections, each sending a message of SIZE bytes and waiting for
//! its echo, again and again, for SECONDS; no matching, no histograms. It uses the same
//! tungstenite settings as `wsprobe load` (4 KiB read buffer, unbuffered writes, no
//! Nagle), so the comparison is of what wsprobe adds. Prints `echoes/s: X`.
//!
//! Usage: bench_ping_loop URL CONNECTIONS SECONDS SIZE

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: bench_ping_loop URL CONNECTIONS SECONDS SIZE");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let connections: usize = args[2].parse().expect("CONNECTIONS is a number");
    let seconds: f64 = args[3].parse().expect("SECONDS is a number");
    let size: usize = args[4].parse().expect("SIZE is a number");
    let payload = format!(
        "{{\"action\":\"send\",\"body\":\"{}\"}}",
        "x".repeat(size.saturating_sub(27))
    );
    let echoes = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for _ in 0..connections {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
                .await
                .expect("connecting to the echo server");
        streams.push(ws);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for mut ws in streams {
        let echoes = echoes.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if ws.send(Message::text(payload.clone())).await.is_err() {
                    return;
                }
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => break,
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                }
                echoes.fetch_add(1, Ordering::Relaxed);
            }
            let _ = ws.close(None).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "echoes/s: {:.1}",
        echoes.load(Ordering::Relaxed) as f64 / elapsed
    );
}
