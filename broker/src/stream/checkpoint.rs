//! How a task's checkpoints are stored in [`STATE_TOPIC`], whatever their
//! size, and how often a task takes one.
//!
//! # Records
//!
//! A checkpoint of at most [`CHUNK_BYTES`] is one record keyed by the task
//! ([`super::task::TaskId::state_key`]), its value the checkpoint's JSON.
//! A larger one is cut into chunk records keyed `<task key>/<slot>/<i>`,
//! each value the checkpoint's id (8 bytes, big-endian) and its part of the
//! JSON, followed by a small *head* at the task's key naming them:
//! `{"weir_chunks":{"slot":…,"parts":…,"id":…,"bytes":…,"crc32c":…}}`.
//!
//! Chunks go to the slot (0 or 1) the current head does not name, and the
//! head is written only once every chunk is acknowledged: a crash between
//! them leaves the previous head naming the other slot, whose chunks were
//! not touched. The id and the CRC-32C of the whole JSON tell a reader that
//! the chunks it found are the ones the head names. Chunk keys a slot no
//! longer uses (a checkpoint in fewer parts, or one that fits a record) are
//! deleted with tombstones, so compaction keeps at most two checkpoints'
//! chunks per task. Job names are `[a-zA-Z0-9._-]`, so no task key is a
//! prefix of another's chunk keys.
//!
//! # How often
//!
//! Every [`CHECKPOINT_EVERY`], or less often when storing the last one took
//! longer than a tenth of that: a task spends at most about a tenth of its
//! time checkpointing, however large its state (a crash then replays more
//! input, which the exactly-once design absorbs). A checkpoint the same as
//! the last one written or loaded (same length and CRC-32C: a task with no
//! input) is not written again.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use weir_client::{Producer, ProducerRecord};

use super::job::JobDef;
use super::task::{read_latest, TaskError, STATE_TOPIC};

/// How often a running task checkpoints (at most; see the module docs).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The largest checkpoint stored as one record, and the size of a chunk.
pub const CHUNK_BYTES: usize = 8 << 20;
/// What starts a head record's value (a checkpoint's JSON starts `{"sql"`).
const HEAD_PREFIX: &[u8] = b"{\"weir_chunks\":";

/// A checkpoint as stored: the statement it was taken under (a changed job
/// starts afresh) and the task's own state (read back as [`Taken`], then
/// the state alone).
#[derive(Serialize)]
struct Stored<T> {
    sql: String,
    /// The job's incarnation ([`JobDef::incarnation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incarnation: Option<u64>,
    #[serde(flatten)]
    state: T,
}

/// The chunks a head names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    slot: u8,
    parts: u32,
    id: u64,
    bytes: u64,
    crc32c: u32,
}

/// A head record's value.
#[derive(Serialize, Deserialize)]
struct Head {
    weir_chunks: Manifest,
}

/// One task's checkpoints: where the next one goes, which chunk keys are in
/// use, and when it is due.
#[derive(Debug)]
pub struct Checkpoints {
    key: String,
    /// The slot the current head names, if the last checkpoint was chunked.
    current: Option<u8>,
    /// How many chunk keys each slot may hold (tombstoned ones excluded).
    parts: [u32; 2],
    /// How long storing the last checkpoint took.
    last_cost: Duration,
    /// When the last checkpoint was stored.
    last_at: Instant,
    /// The length and CRC-32C of the last checkpoint written or loaded: the
    /// same again (a task with no input) is not written again.
    last_written: Option<(usize, u32)>,
}

impl Checkpoints {
    /// How long after the last checkpoint the next is due.
    pub fn interval(&self) -> Duration {
        CHECKPOINT_EVERY.max(self.last_cost * 10)
    }

    /// The task saw nothing since its last checkpoint that a checkpoint
    /// would keep: none is written, the next is due an interval from now.
    pub fn unchanged(&mut self) {
        self.last_at = Instant::now();
    }

    /// Whether a checkpoint is due now.
    pub fn due(&self) -> bool {
        self.last_at.elapsed() >= self.interval()
    }

    /// Stores checkpoint `state` of `def`, once the producer's earlier
    /// writes (flushed by the caller) are acknowledged.
    pub async fn store<T: Serialize>(
        &mut self,
        producer: &Producer,
        def: &JobDef,
        state: &T,
    ) -> Result<(), TaskError> {
        let started = Instant::now();
        let stored = Stored {
            sql: def.sql.clone(),
            incarnation: def.incarnation,
            state,
        };
        let json = serde_json::to_vec(&stored).map_err(|e| TaskError::Checkpoint(e.to_string()))?;
        let written = (json.len(), crc32c::crc32c(&json));
        if self.last_written == Some(written) {
            // Stored already (found from outside: two idle jobs rewrote
            // their unchanged state, 1.2 GB in a minute).
            self.last_at = Instant::now();
            return Ok(());
        }
        // Unknown until this one is acknowledged whole.
        self.last_written = None;
        if json.len() <= CHUNK_BYTES {
            producer
                .send_and_wait(
                    ProducerRecord::new(STATE_TOPIC, Bytes::from(json)).key(self.key.clone()),
                )
                .await?;
            self.current = None;
            // Chunks of a larger checkpoint before are no longer named.
            for slot in 0..2u8 {
                self.drop_parts(producer, slot, 0).await?;
            }
        } else {
            let slot = self.current.map_or(0, |s| 1 - s);
            let id = next_id();
            let chunks = split(&json, id);
            let manifest = Manifest {
                slot,
                parts: chunks.len() as u32,
                id,
                bytes: json.len() as u64,
                crc32c: written.1,
            };
            drop(json);
            for (i, chunk) in chunks.into_iter().enumerate() {
                producer
                    .send_detached(
                        ProducerRecord::new(STATE_TOPIC, chunk).key(chunk_key(&self.key, slot, i)),
                    )
                    .await?;
            }
            self.drop_parts(producer, slot, manifest.parts).await?;
            producer.flush().await?;
            if let Some(e) = producer.take_detached_error() {
                return Err(e.into());
            }
            let head = serde_json::to_vec(&Head {
                weir_chunks: manifest,
            })
            .map_err(|e| TaskError::Checkpoint(e.to_string()))?;
            producer
                .send_and_wait(ProducerRecord::new(STATE_TOPIC, head).key(self.key.clone()))
                .await?;
            self.current = Some(slot);
        }
        self.last_written = Some(written);
        self.last_cost = started.elapsed();
        self.last_at = Instant::now();
        if self.last_cost > CHECKPOINT_EVERY / 10 {
            tracing::debug!(
                key = %self.key,
                cost_ms = self.last_cost.as_millis() as u64,
                next_in_ms = self.interval().as_millis() as u64,
                "large checkpoint: taken less often"
            );
        }
        Ok(())
    }

    /// Deletes the chunk keys of `slot` from `keep` on.
    async fn drop_parts(
        &mut self,
        producer: &Producer,
        slot: u8,
        keep: u32,
    ) -> Result<(), TaskError> {
        let used = &mut self.parts[usize::from(slot)];
        for i in keep..*used {
            let mut tombstone = ProducerRecord::new(STATE_TOPIC, Bytes::new())
                .key(chunk_key(&self.key, slot, i as usize));
            tombstone.value = None;
            producer.send_detached(tombstone).await?;
        }
        *used = keep;
        Ok(())
    }
}

/// The last checkpoint of task `key` of `def`, if it has one taken under
/// the same statement, and the task's [`Checkpoints`] to store the next.
pub async fn load<T: DeserializeOwned>(
    bootstrap: &str,
    def: &JobDef,
    key: &str,
) -> Result<(Option<T>, Checkpoints), TaskError> {
    let prefix = format!("{key}/");
    let latest = read_latest(bootstrap, STATE_TOPIC, |k| {
        k == key.as_bytes() || k.starts_with(prefix.as_bytes())
    })
    .await?;
    let mut cps = Checkpoints {
        key: key.to_string(),
        current: None,
        parts: [0, 0],
        last_cost: Duration::ZERO,
        last_at: Instant::now(),
        last_written: None,
    };
    // Every chunk key present, so that the next stores delete what they
    // no longer use (those of a crash before its head included).
    for k in latest.keys() {
        if let Some((slot, i)) = parse_chunk_key(key, k) {
            let used = &mut cps.parts[usize::from(slot)];
            *used = (*used).max(i + 1);
        }
    }
    let Some(head) = latest.get(key.as_bytes()) else {
        return Ok((None, cps));
    };
    let json = match parse_head(head)? {
        None => head.clone(),
        Some(m) => {
            cps.current = Some(m.slot);
            let chunks: Vec<Option<&Bytes>> = (0..m.parts as usize)
                .map(|i| latest.get(chunk_key(key, m.slot, i).as_bytes()))
                .collect();
            Bytes::from(assemble(&m, &chunks).map_err(TaskError::Checkpoint)?)
        }
    };
    cps.last_written = Some((json.len(), crc32c::crc32c(&json)));
    drop(latest);
    // The statement first, its state skipped: a large state is read once,
    // straight into the task's types (no JSON value tree in between).
    let taken: Taken =
        serde_json::from_slice(&json).map_err(|e| TaskError::Checkpoint(e.to_string()))?;
    if taken.sql != def.sql || taken.incarnation != def.incarnation {
        return Ok((None, cps));
    }
    // The state's fields are beside `sql` and `incarnation` (flattened),
    // which its type skips as unknown: read directly, not through serde's
    // buffer for flattened fields.
    let state: T =
        serde_json::from_slice(&json).map_err(|e| TaskError::Checkpoint(e.to_string()))?;
    Ok((Some(state), cps))
}

/// What a checkpoint was taken under ([`Stored`] without its state).
#[derive(Deserialize)]
struct Taken {
    sql: String,
    #[serde(default)]
    incarnation: Option<u64>,
}

/// The key of chunk `i` of `slot` of task `key`.
fn chunk_key(key: &str, slot: u8, i: usize) -> String {
    format!("{key}/{slot}/{i}")
}

/// The slot and index of chunk key `k` of task `key`, if it is one.
fn parse_chunk_key(key: &str, k: &[u8]) -> Option<(u8, u32)> {
    let rest = std::str::from_utf8(k.strip_prefix(key.as_bytes())?.strip_prefix(b"/")?).ok()?;
    let (slot, i) = rest.split_once('/')?;
    let slot = match slot {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    Some((slot, i.parse().ok()?))
}

/// The manifest of head record `value`, or `None` for a checkpoint stored
/// whole.
fn parse_head(value: &[u8]) -> Result<Option<Manifest>, TaskError> {
    if !value.starts_with(HEAD_PREFIX) {
        return Ok(None);
    }
    let head: Head = serde_json::from_slice(value)
        .map_err(|e| TaskError::Checkpoint(format!("unreadable chunked checkpoint head: {e}")))?;
    Ok(Some(head.weir_chunks))
}

/// `json` cut into chunk values of at most [`CHUNK_BYTES`], each led by `id`.
fn split(json: &[u8], id: u64) -> Vec<Bytes> {
    json.chunks(CHUNK_BYTES)
        .map(|part| {
            let mut v = BytesMut::with_capacity(8 + part.len());
            v.put_u64(id);
            v.put_slice(part);
            v.freeze()
        })
        .collect()
}

/// The checkpoint's JSON put back together from the chunks `m` names
/// (`chunks[i]` is chunk `i` as read, if present), or why it cannot be.
fn assemble(m: &Manifest, chunks: &[Option<&Bytes>]) -> Result<Vec<u8>, String> {
    let mut json = Vec::with_capacity(usize::try_from(m.bytes).unwrap_or(0));
    for (i, chunk) in chunks.iter().enumerate() {
        let chunk = chunk.ok_or_else(|| {
            format!(
                "chunk {i} of {} of checkpoint {} (slot {}) is missing",
                m.parts, m.id, m.slot
            )
        })?;
        let (id, part) = chunk.split_at_checked(8).ok_or_else(|| {
            format!(
                "chunk {i} of checkpoint {} is {} bytes, too short",
                m.id,
                chunk.len()
            )
        })?;
        let id = u64::from_be_bytes(id.try_into().expect("8 bytes"));
        if id != m.id {
            return Err(format!(
                "chunk {i} of slot {} belongs to checkpoint {id}, not {}",
                m.slot, m.id
            ));
        }
        json.extend_from_slice(part);
    }
    if json.len() as u64 != m.bytes || crc32c::crc32c(&json) != m.crc32c {
        return Err(format!(
            "checkpoint {} put together from {} chunks is {} bytes with CRC-32C {:#010x}, \
             its head says {} bytes with {:#010x}",
            m.id,
            m.parts,
            json.len(),
            crc32c::crc32c(&json),
            m.bytes,
            m.crc32c
        ));
    }
    Ok(json)
}

/// A checkpoint id different from the one before it in the same slot.
fn next_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(json: &[u8], slot: u8, id: u64) -> (Manifest, Vec<Bytes>) {
        let chunks = split(json, id);
        let m = Manifest {
            slot,
            parts: chunks.len() as u32,
            id,
            bytes: json.len() as u64,
            crc32c: crc32c::crc32c(json),
        };
        (m, chunks)
    }

    #[test]
    fn a_checkpoint_in_chunks_is_put_back_together() {
        let json: Vec<u8> = (0..2 * CHUNK_BYTES + 17).map(|i| (i % 251) as u8).collect();
        let (m, chunks) = manifest_of(&json, 1, 42);
        assert_eq!(m.parts, 3);
        assert!(chunks.iter().all(|c| c.len() <= 8 + CHUNK_BYTES));
        let found: Vec<Option<&Bytes>> = chunks.iter().map(Some).collect();
        assert_eq!(assemble(&m, &found).unwrap(), json);
    }

    #[test]
    fn chunks_of_another_checkpoint_or_missing_or_altered_are_refused() {
        let json: Vec<u8> = (0..CHUNK_BYTES + 5).map(|i| (i % 7) as u8).collect();
        let (m, chunks) = manifest_of(&json, 0, 7);
        let (_, other) = manifest_of(&json, 0, 8);
        let mixed = [Some(&chunks[0]), Some(&other[1])];
        assert!(assemble(&m, &mixed)
            .unwrap_err()
            .contains("belongs to checkpoint 8"));
        let missing = [Some(&chunks[0]), None];
        assert!(assemble(&m, &missing).unwrap_err().contains("missing"));
        let mut bent = chunks[1].to_vec();
        bent[9] ^= 1;
        let bent = Bytes::from(bent);
        let altered = [Some(&chunks[0]), Some(&bent)];
        assert!(assemble(&m, &altered).unwrap_err().contains("CRC-32C"));
    }

    #[test]
    fn a_head_is_told_from_a_whole_checkpoint() {
        let whole = serde_json::to_vec(&Stored {
            sql: "INSERT INTO o SELECT …".into(),
            incarnation: Some(3),
            state: serde_json::json!({"position": 1}),
        })
        .unwrap();
        assert_eq!(parse_head(&whole).unwrap(), None);
        let m = Manifest {
            slot: 1,
            parts: 9,
            id: 5,
            bytes: 70 << 20,
            crc32c: 1,
        };
        let head = serde_json::to_vec(&Head { weir_chunks: m }).unwrap();
        assert_eq!(parse_head(&head).unwrap(), Some(m));
        assert!(parse_head(b"{\"weir_chunks\":{}}").is_err());
    }

    #[test]
    fn chunk_keys_belong_to_their_task_only() {
        let key = "j#aggregate-1";
        assert_eq!(
            parse_chunk_key(key, chunk_key(key, 1, 12).as_bytes()),
            Some((1, 12))
        );
        assert_eq!(parse_chunk_key(key, b"j#aggregate-10/0/3"), None);
        assert_eq!(parse_chunk_key(key, b"j#aggregate-1"), None);
        assert_eq!(parse_chunk_key(key, b"j#aggregate-1/2/0"), None);
    }
}
