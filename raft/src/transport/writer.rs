//! Writing queued frames to a socket, many to a write.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Size of the write buffer that frames are coalesced in. A frame bigger than
/// this goes to the socket directly (BufWriter passes large writes through).
const WRITE_BUFFER: usize = 64 * 1024;

/// Writes the frames of `rx` (after `first`, if any) to `w` until `rx` closes
/// or a write fails.
///
/// Whatever is queued when a frame is written goes out in the same flush, so
/// under load many small frames (votes, heartbeats, responses of many groups)
/// share one syscall, and an idle connection flushes each frame at once. A
/// frame for which `keep` says false is skipped: its caller has given up.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    w: W,
    first: Option<Bytes>,
    rx: &mut mpsc::Receiver<Bytes>,
    keep: impl Fn(&[u8]) -> bool,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, w);
    let mut next = first;
    loop {
        let frame = match next.take() {
            Some(frame) => frame,
            None => match rx.recv().await {
                Some(frame) => frame,
                None => return w.flush().await,
            },
        };
        if keep(&frame) {
            w.write_all(&frame).await?;
        }
        while let Ok(frame) = rx.try_recv() {
            if keep(&frame) {
                w.write_all(&frame).await?;
            }
        }
        w.flush().await?;
    }
}
