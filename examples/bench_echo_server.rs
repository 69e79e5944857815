//! Benchmark helper (`--features bench`): the smallest tokio-tungstenite echo server,
//! the common target of `scripts/bench-load.sh`. Every text or binary message goes back
//! unchanged (so `wsprobe load --echo full` matches it). Prints its `ws://` URL, then
//! serves until killed.
//!
//! Usage: bench_echo_server [ADDR]   (default 127.0.0.1:0, a free port)

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("ws://{}/", listener.local_addr()?);
    // Small buffers, so 10,000 idle connections do not measure the server's memory.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                let echo = match message {
                    Message::Text(_) | Message::Binary(_) => message,
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(echo).await.is_err() {
                    break;
                }
            }
        });
    }
}
