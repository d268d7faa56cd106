//! Joining an SSH channel to a child process: stdin from the client, stdout and stderr
//! back, with backpressure both ways, then the exit status.

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

/// Bytes read from the child per channel write.
const COPY_BUFFER: usize = 256 << 10;

/// The channel's writing half, kept open after the child exits so the caller can
/// finish its own work before the client learns the outcome.
pub type Finisher = ChannelWriteHalf<Msg>;

/// Sends the exit status, EOF and close: the client's command ends here.
pub async fn finish(tx: Finisher, code: u32) {
    let _ = tx.exit_status(code).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// Pipes `channel` through `child` until the child exits; returns its exit code
/// (255 when it was killed by a signal) and the writing half, still open: call
/// [`finish`] with it.
pub async fn pipe_child(channel: Channel<Msg>, mut child: Child) -> (u32, Finisher) {
    let (mut rx, tx) = channel.split();
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return (255, tx);
    };
    // Client → child. The bounded channel queue plus awaiting the pipe write is the
    // backpressure: a slow child slows the client down at the TCP level.
    let feed = tokio::spawn(async move {
        while let Some(msg) = rx.wait().await {
            match msg {
                ChannelMsg::Data { data } if stdin.write_all(&data).await.is_err() => break,
                ChannelMsg::Data { .. } => {}
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        // Dropping stdin gives the child its EOF.
        drop(stdin);
        // Keep draining so a client that sends after EOF cannot stall the connection.
        while rx.wait().await.is_some() {}
    });
    let mut out = tx.make_writer();
    let mut err = tx.make_writer_ext(Some(1));
    // Child → client; the writers wait for the peer's window.
    // Read in large chunks so each channel write fills whole SSH packets.
    let mut stdout = tokio::io::BufReader::with_capacity(COPY_BUFFER, stdout);
    let (_, _) = tokio::join!(
        tokio::io::copy_buf(&mut stdout, &mut out),
        tokio::io::copy(&mut stderr, &mut err)
    );
    let _ = out.flush().await;
    let _ = err.flush().await;
    let code = match child.wait().await {
        Ok(status) => status.code().map(|c| c as u32).unwrap_or(255),
        Err(_) => 255,
    };
    feed.abort();
    (code, tx)
}
