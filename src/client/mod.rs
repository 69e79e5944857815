//! Opening a connection: URL checks, handshake headers (auth, API key, subprotocols,
//! origin), TCP with a timeout, TLS through rustls, and the WebSocket handshake, with each
//! way of failing told apart so the user learns what went wrong.

mod error;

pub use error::ConnectError;
