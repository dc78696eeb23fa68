//! Decompression of a batch's records section with a hard limit on the output.
//!
//! A compressed batch of a few kilobytes can expand to gigabytes (a decompression
//! bomb). Every decompression in Weir goes through [`decompress`], which stops with
//! an error as soon as the output would pass `limit` bytes, so memory is bounded by
//! the limit and never by what the compressed stream claims.

use std::io::Read;

use crate::error::BatchError;

/// Kafka's xerial snappy framing: a magic header, then (length, block) pairs.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn failed(codec: &str, e: impl std::fmt::Display) -> BatchError {
    BatchError::MalformedRecords(format!("{codec} decompression failed: {e}"))
}

fn too_large(limit: usize) -> BatchError {
    BatchError::DecompressedTooLarge { limit }
}

/// Reads `reader` to its end into `out`, failing once more than `limit` bytes
/// come out.
fn read_bounded(
    codec: &str,
    reader: impl Read,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(out)
        .map_err(|e| failed(codec, e))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

/// Decompresses one raw snappy block into `out`, keeping `out` within `limit`.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), BatchError> {
    let n = snap::raw::decompress_len(block).map_err(|e| failed("snappy", e))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(too_large(limit));
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| failed("snappy", e))?;
    Ok(())
}

/// Snappy as Kafka clients write it: xerial framing, or one raw block.
fn snappy(input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    if input.len() < XERIAL_HEADER_LEN || &input[..XERIAL_MAGIC.len()] != XERIAL_MAGIC {
        return snappy_block(input, out, limit);
    }
    let mut rest = &input[XERIAL_HEADER_LEN..];
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(failed("snappy", "truncated block length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(failed("snappy", "block runs past the batch"));
        }
        snappy_block(&tail[..len], out, limit)?;
        rest = &tail[len..];
    }
    Ok(())
}

/// Decompresses `input` compressed with Kafka codec `codec` (1 gzip, 2 snappy,
/// 3 lz4, 4 zstd), failing if the output would exceed `limit` bytes.
pub(crate) fn decompress(codec: i16, input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    decompress_into(codec, input, limit, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (cleared first), so a caller can reuse one buffer.
pub(crate) fn decompress_into(
    codec: i16,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    out.clear();
    match codec {
        1 => read_bounded("gzip", flate2::read::GzDecoder::new(input), limit, out),
        2 => snappy(input, limit, out),
        3 => {
            let decoder = lz4::Decoder::new(input).map_err(|e| failed("lz4", e))?;
            read_bounded("lz4", decoder, limit, out)
        }
        4 => ZSTD.with(|ctx| {
            // This thread's decompression context, reused from batch to batch
            // (creating one allocates its window), over the input as it is.
            let mut ctx = ctx.borrow_mut();
            let decoder = zstd::stream::read::Decoder::with_context(input, &mut ctx);
            read_bounded("zstd", decoder, limit, out)
        }),
        c => Err(BatchError::UnknownCodec(c)),
    }
}

thread_local! {
    static ZSTD: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::compress;

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for codec in 1..=4 {
            let packed = compress(codec, &raw).unwrap();
            assert_eq!(
                decompress(codec, &packed, raw.len()).unwrap(),
                raw,
                "codec {codec}"
            );
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_for_every_codec() {
        // 64 MiB of zeros compresses to a few KiB in every codec.
        let raw = vec![0u8; 64 << 20];
        for codec in 1..=4 {
            let packed = compress(codec, &raw).unwrap();
            assert!(packed.len() < 4 << 20, "codec {codec}: {}", packed.len());
            let err = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert!(
                err.to_string().contains("more than"),
                "codec {codec}: {err}"
            );
        }
    }

    #[test]
    fn a_snappy_block_claiming_a_huge_length_is_refused_before_allocating() {
        // A raw snappy block starts with the uncompressed length as a varint:
        // 0xffffffff0f claims 4 GiB.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(2, &block, 1 << 20).is_err());
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
        framed.extend_from_slice(&block);
        assert!(decompress(2, &framed, 1 << 20).is_err());
        // A block length past the input.
        let mut short = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        short.extend_from_slice(&1000u32.to_be_bytes());
        assert!(decompress(2, &short, 1 << 20).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in 1..=4 {
            for input in [&b""[..], b"\x00", b"not compressed at all", &[0xff; 64]] {
                let _ = decompress(codec, input, 1 << 20);
            }
        }
        assert!(matches!(
            decompress(7, b"x", 10),
            Err(BatchError::UnknownCodec(7))
        ));
    }
}
