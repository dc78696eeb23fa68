//! The frame: the unit the transport puts on a TCP connection.
//!
//! # Format
//!
//! Every frame, request or response, in either direction, is
//!
//! | offset | size | field            | meaning                                              |
//! |-------:|-----:|------------------|------------------------------------------------------|
//! | 0      | 4    | `length`         | u32, big endian: bytes that follow this field (>= 17) |
//! | 4      | 1    | `kind`           | what the body is, see [`Kind`]                       |
//! | 5      | 8    | `group_id`       | u64, big endian: the Raft group (partition) addressed |
//! | 13     | 8    | `correlation_id` | u64, big endian: chosen by the requester, echoed back |
//! | 21     | n    | `body`           | `n = length - 17` bytes of postcard                  |
//!
//! The body is the [postcard] encoding of the openraft message named by `kind`
//! (serde, varint integers, no field names). A `RecordBatch` inside an entry is a
//! byte string: a varint length and then the batch's bytes as they are.
//!
//! `length` is checked against a cap (default [`DEFAULT_MAX_FRAME_BYTES`]) before
//! anything is allocated for the frame: a bigger frame is refused with
//! [`FrameError::TooLarge`], and the reader never reserves more than
//! [`READ_CHUNK`] bytes at a time, so a lying length costs at most the bytes the
//! peer really sends. A length below 17, or an unknown kind, is
//! [`FrameError::Malformed`]; both end the connection.
//!
//! [postcard]: https://docs.rs/postcard

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default cap on a frame's `length` field: 64 MiB.
pub(crate) const DEFAULT_MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// Bytes of the `length` field.
const LENGTH_BYTES: usize = 4;
/// Bytes counted by `length` before the body: kind, group id, correlation id.
const HEADER_AFTER_LENGTH: usize = 1 + 8 + 8;
/// Bytes from the start of a frame to its body.
pub(crate) const HEADER_BYTES: usize = LENGTH_BYTES + HEADER_AFTER_LENGTH;
/// The most a reader reserves at once while a frame's bytes arrive.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// What a frame carries. Requests are below 0x80, responses at 0x80 and up.
///
/// 0x10–0x1f are kept for coalesced per-node-pair heartbeats (not built yet):
/// they would be sent and answered by the link layer itself, see the module
/// doc of `transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Body: `AppendEntriesRequest`. Answered with a `StreamAppendResult`.
    AppendEntries = 0x01,
    /// Body: `VoteRequest`. Answered with a `VoteResponse`.
    Vote = 0x02,
    /// Body: `VoteRequest` for a pre-vote. Answered with a `VoteResponse`.
    PreVote = 0x03,
    /// Body: `SnapshotRequest` (vote, metadata, data). Answered with a `SnapshotResponse`.
    Snapshot = 0x04,
    /// Body: `TransferLeaderRequest`. Answered with a `TransferLeaderResponse`.
    TransferLeader = 0x05,
    /// Body: `ProposeRequest`, a batch for the group's leader to propose (a
    /// follower forwards it). Answered with `Result<Offsets, ProposeError>`.
    Propose = 0x06,
    /// Body: `Vec<LeaderNotice>`, the groups the sending node leads.
    /// Answered with `()`.
    Leaders = 0x07,
    /// Body: `ReadLogRequest`, batches of the group's partition log below a
    /// snapshot's boundary. Answered with `Result<LogChunk, String>`.
    ReadLog = 0x08,
    /// Body: `Hello`, the first frame of a connection: which cluster the
    /// connecting node belongs to. Answered with `()`, or refused with
    /// `WireError::OtherCluster` and the connection closed.
    Hello = 0x09,
    /// The request with this correlation id succeeded; body: its response.
    Ok = 0x80,
    /// The request with this correlation id failed; body: a `WireError`.
    Err = 0x81,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::AppendEntries,
            0x02 => Kind::Vote,
            0x03 => Kind::PreVote,
            0x04 => Kind::Snapshot,
            0x05 => Kind::TransferLeader,
            0x06 => Kind::Propose,
            0x07 => Kind::Leaders,
            0x08 => Kind::ReadLog,
            0x09 => Kind::Hello,
            0x80 => Kind::Ok,
            0x81 => Kind::Err,
            _ => return None,
        })
    }

    /// Whether this kind answers a request.
    pub(crate) fn is_response(self) -> bool {
        (self as u8) >= 0x80
    }
}

/// A frame could not be read, written or understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FrameError {
    /// The `length` field is above the cap; nothing was allocated for it.
    #[error("frame of {length} bytes is over the {max}-byte cap")]
    TooLarge {
        /// The length the peer announced.
        length: u64,
        /// The cap in force.
        max: u32,
    },
    /// The frame's header is not one this transport writes.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection ended in the middle of a frame.
    #[error("connection closed after {0} bytes of an unfinished frame")]
    Truncated(usize),
    /// The body is not the postcard encoding of the message its kind names.
    #[error("frame body does not decode: {0}")]
    Body(#[from] postcard::Error),
    /// Reading the socket failed.
    #[error("frame io: {0}")]
    Io(#[from] std::io::Error),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// What the body is.
    pub(crate) kind: Kind,
    /// The Raft group addressed.
    pub(crate) group_id: u64,
    /// Pairs a response with its request.
    pub(crate) correlation_id: u64,
    /// The postcard body.
    pub(crate) body: Bytes,
}

impl Frame {
    /// Encodes a frame whose body is `msg` in postcard, in one buffer.
    ///
    /// Refuses a frame over `max` so that a huge message fails at its sender
    /// with a precise error instead of being cut off by the receiver.
    pub(crate) fn encode<T: Serialize>(
        kind: Kind,
        group_id: u64,
        correlation_id: u64,
        msg: &T,
        max: u32,
    ) -> Result<Bytes, FrameError> {
        let mut buf = Vec::with_capacity(HEADER_BYTES + 64);
        buf.resize(HEADER_BYTES, 0);
        let mut buf = postcard::to_extend(msg, buf)?;
        let length = (buf.len() - LENGTH_BYTES) as u64;
        if length > u64::from(max) {
            return Err(FrameError::TooLarge { length, max });
        }
        let mut header = &mut buf[..HEADER_BYTES];
        header.put_u32(length as u32);
        header.put_u8(kind as u8);
        header.put_u64(group_id);
        header.put_u64(correlation_id);
        Ok(Bytes::from(buf))
    }

    /// Decodes the body as `T`.
    pub(crate) fn body<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        Ok(postcard::from_bytes(&self.body)?)
    }

    /// Takes one whole frame off the front of `buf`, if one is there.
    ///
    /// `Ok(None)`: more bytes are needed. The header is checked as soon as its
    /// 21 bytes are in, so an oversized or malformed frame fails before its body
    /// arrives.
    pub(crate) fn decode(buf: &mut BytesMut, max: u32) -> Result<Option<Frame>, FrameError> {
        let Some(length) = Self::check_header(buf, max)? else {
            return Ok(None);
        };
        let total = LENGTH_BYTES + length as usize;
        if buf.len() < total {
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(LENGTH_BYTES);
        let kind = frame.get_u8();
        let kind = Kind::from_u8(kind)
            .ok_or_else(|| FrameError::Malformed(format!("unknown kind {kind:#04x}")))?;
        let group_id = frame.get_u64();
        let correlation_id = frame.get_u64();
        Ok(Some(Frame {
            kind,
            group_id,
            correlation_id,
            body: frame.freeze(),
        }))
    }

    /// The `length` of the frame at the front of `buf` once its header is in.
    fn check_header(buf: &BytesMut, max: u32) -> Result<Option<u32>, FrameError> {
        if buf.len() < LENGTH_BYTES {
            return Ok(None);
        }
        let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if length > max {
            return Err(FrameError::TooLarge {
                length: u64::from(length),
                max,
            });
        }
        if (length as usize) < HEADER_AFTER_LENGTH {
            return Err(FrameError::Malformed(format!(
                "length {length} is below the 17-byte header"
            )));
        }
        if buf.len() > LENGTH_BYTES {
            let kind = buf[LENGTH_BYTES];
            if Kind::from_u8(kind).is_none() {
                return Err(FrameError::Malformed(format!("unknown kind {kind:#04x}")));
            }
        }
        Ok(Some(length))
    }
}

/// The correlation id of an encoded frame (as [`Frame::encode`] made it).
pub(crate) fn correlation_of(frame: &[u8]) -> Option<u64> {
    let bytes = frame.get(LENGTH_BYTES + 1 + 8..HEADER_BYTES)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads frames off a byte stream, buffering partial ones.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `max` bytes from `inner`.
    pub(crate) fn new(inner: R, max: u32) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
            max,
        }
    }

    /// The next frame; `Ok(None)` when the peer closed cleanly between frames.
    ///
    /// Cancel safe: a partly read frame stays in the buffer.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf, self.max)? {
                return Ok(Some(frame));
            }
            // Grow by at most READ_CHUNK: the length field is the peer's word only.
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated(self.buf.len()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{log_id, Entry, RecordBatch, TypeConfig, Vote};
    use openraft::entry::RaftEntry;
    use openraft::raft::AppendEntriesRequest;
    use proptest::prelude::*;

    fn append_request() -> AppendEntriesRequest<TypeConfig> {
        let batch = RecordBatch(Bytes::from(
            (0..=255u8).cycle().take(10_000).collect::<Vec<u8>>(),
        ));
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 9)),
            entries: vec![
                Entry::new_normal(log_id(3, 10), batch),
                Entry::new_blank(log_id(3, 11)),
            ],
            leader_commit: Some(log_id(2, 9)),
        }
    }

    #[test]
    fn round_trips_a_record_batch_append() {
        let req = append_request();
        let bytes =
            Frame::encode(Kind::AppendEntries, 7, 42, &req, DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_eq!(correlation_of(&bytes), Some(42));
        // The batch goes out as raw bytes: the frame is barely bigger than the batch.
        assert!(bytes.len() < 10_000 + 100, "frame is {} bytes", bytes.len());
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = Frame::decode(&mut buf, DEFAULT_MAX_FRAME_BYTES)
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        assert_eq!(
            (frame.kind, frame.group_id, frame.correlation_id),
            (Kind::AppendEntries, 7, 42)
        );
        let back: AppendEntriesRequest<TypeConfig> = frame.body().unwrap();
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
        assert_eq!(back.entries[0].payload, req.entries[0].payload);
    }

    #[test]
    fn waits_for_a_truncated_frame_and_reports_eof_inside_it() {
        let bytes = Frame::encode(Kind::Vote, 1, 2, &5u32, DEFAULT_MAX_FRAME_BYTES).unwrap();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(Frame::decode(&mut buf, DEFAULT_MAX_FRAME_BYTES)
                .unwrap()
                .is_none());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt
            .block_on(FrameReader::new(&bytes[..bytes.len() - 1], 1024).next())
            .unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated(n) if n == bytes.len() - 1),
            "{err}"
        );
    }

    #[test]
    fn refuses_oversized_frames_from_the_header_alone() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = Frame::decode(&mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                length: 0xffff_ffff,
                max: DEFAULT_MAX_FRAME_BYTES
            }
        ));
        assert_eq!(
            err.to_string(),
            "frame of 4294967295 bytes is over the 67108864-byte cap"
        );
        let err = Frame::encode(Kind::Vote, 1, 1, &vec![0u8; 100], 50).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 50, .. }), "{err}");
    }

    #[test]
    fn refuses_short_lengths_unknown_kinds_and_bad_bodies() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2, 3][..]);
        assert!(matches!(
            Frame::decode(&mut buf, 1024),
            Err(FrameError::Malformed(_))
        ));
        let mut bytes = Frame::encode(Kind::Vote, 1, 1, &1u8, 1024)
            .unwrap()
            .to_vec();
        bytes[4] = 0x42;
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            Frame::decode(&mut buf, 1024),
            Err(FrameError::Malformed(_))
        ));
        let frame = Frame {
            kind: Kind::Vote,
            group_id: 1,
            correlation_id: 1,
            body: Bytes::from_static(&[0xff]),
        };
        assert!(matches!(
            frame.body::<AppendEntriesRequest<TypeConfig>>(),
            Err(FrameError::Body(_))
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoder(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(frame)) = Frame::decode(&mut buf, 256) {
                let _ = frame.body::<AppendEntriesRequest<TypeConfig>>();
                let _ = frame.body::<openraft::raft::VoteRequest<TypeConfig>>();
            }
        }
    }
}
