//! A TCP stream the server can cut at any moment, whatever russh is doing with it.
//!
//! russh only reads its disconnect requests between key exchanges, so a client stuck in
//! (or never starting) the handshake cannot be sent away politely. Wrapping the socket
//! lets the login-grace timer and shutdown end such a connection for certain: once cut,
//! every read and write fails, russh drops the stream, and the socket closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A stream that fails every operation once its token is cancelled.
pub struct CuttableStream<S> {
    inner: S,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    is_cut: bool,
}

impl<S> CuttableStream<S> {
    /// Wraps `inner`; cancelling `token` cuts it.
    pub fn new(inner: S, token: CancellationToken) -> CuttableStream<S> {
        CuttableStream {
            inner,
            cut: Box::pin(token.cancelled_owned()),
            is_cut: false,
        }
    }

    /// Whether the stream has been cut; registers `cx` to be woken when it is.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_cut && self.cut.as_mut().poll(cx).is_ready() {
            self.is_cut = true;
        }
        self.is_cut
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the server",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for CuttableStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CuttableStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_blocked_read_fails_as_soon_as_the_stream_is_cut() {
        let (client, server) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut cut = CuttableStream::new(server, token.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            cut.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        token.cancel();
        let result = reader.await.unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        drop(client);
    }

    #[tokio::test]
    async fn an_uncut_stream_passes_data_through() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut cut = CuttableStream::new(server, CancellationToken::new());
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        cut.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }
}
