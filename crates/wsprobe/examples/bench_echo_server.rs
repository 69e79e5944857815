//! Benchmark baseline (scripts/bench-serve.sh): the smallest useful tokio-tungstenite echo
//! server, every text or binary message sent straight back. It prints its URL first.
//!
//! Usage: bench_echo_server [ADDR]   (default 127.0.0.1:0)

use futures_util::{SinkExt, StreamExt};
use std::io::Write;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ws://{}/", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    // The same buffer sizes as `wsprobe serve`, so the memory figures compare like with like.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) =
                tokio_tungstenite::accept_async_with_config(socket, Some(config)).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                let reply = match message {
                    Message::Text(_) | Message::Binary(_) => message,
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
    }
}
