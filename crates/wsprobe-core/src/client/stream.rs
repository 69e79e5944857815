//! The byte stream under a WebSocket: plain TCP for `ws://`, rustls over TCP for `wss://`.
//!
//! tokio-tungstenite is built without its TLS features (we want to see every TLS failure
//! ourselves), so this small type stands in for its `MaybeTlsStream`. It can also hand its
//! transport back when dropped: tungstenite drops the stream when it rejects a handshake
//! response, and we still want to read the rest of that response's body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A TCP connection, with or without TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `ws://`: plain TCP.
    Plain(TcpStream),
    /// `wss://`: TLS over TCP. Boxed because a TLS session is much larger than a socket.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The stream a [`Connection`](super::Connection)'s WebSocket runs over: TCP or TLS.
#[derive(Debug)]
pub struct Stream {
    /// Always `Some` until the stream is dropped.
    transport: Option<Transport>,
    /// Where to send the transport when dropped, while the handshake is in progress.
    give_back: Option<oneshot::Sender<Transport>>,
}

impl Stream {
    /// A stream that sends `transport` to `give_back` if it is dropped before
    /// [`Stream::keep`] is called.
    pub(crate) fn handing_back(
        transport: Transport,
        give_back: oneshot::Sender<Transport>,
    ) -> Self {
        Self {
            transport: Some(transport),
            give_back: Some(give_back),
        }
    }

    /// The handshake succeeded: the stream is the WebSocket's for good.
    pub(crate) fn keep(&mut self) {
        self.give_back = None;
    }

    /// Whether the connection is TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self.transport, Some(Transport::Tls(_)))
    }

    fn transport(&mut self) -> io::Result<&mut Transport> {
        // The transport is only taken in `drop`, after which nothing can poll.
        self.transport
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "stream handed back"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let (Some(give_back), Some(transport)) = (self.give_back.take(), self.transport.take()) {
            let _ = give_back.send(transport);
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(tcp) => tcp.is_write_vectored(),
            Transport::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().transport() {
            Ok(transport) => Pin::new(transport).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().transport() {
            Ok(transport) => Pin::new(transport).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().transport() {
            Ok(transport) => Pin::new(transport).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().transport() {
            Ok(transport) => Pin::new(transport).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().transport() {
            Ok(transport) => Pin::new(transport).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.transport
            .as_ref()
            .is_some_and(Transport::is_write_vectored)
    }
}
