//! Reading what a job (or anything else) writes to a topic it may still be
//! creating: wait for the topic, then read its records from the start.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use weir_client::{Consumer, ConsumerConfig, ConsumerRecord, StartPosition};

/// A consumer of every partition of `topic` from its start, once the topic
/// exists (waits up to 60 s).
pub async fn consume_topic(bootstrap: &str, topic: &str) -> Result<Consumer> {
    let mut c = ConsumerConfig::new(bootstrap).build().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.assign_topic(topic).await.is_err() {
        ensure!(Instant::now() < deadline, "{topic} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.set_start_position(StartPosition::Earliest);
    Ok(c)
}

/// `want` records of `topic`, and any more that come within half a second
/// (duplicates would); fails after 60 s without them.
pub async fn read_topic(bootstrap: &str, topic: &str, want: usize) -> Result<Vec<ConsumerRecord>> {
    let mut c = consume_topic(bootstrap, topic).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    let mut last_error = None;
    while got.len() < want {
        ensure!(
            Instant::now() < deadline,
            "{topic}: {} of {want} records in 60 s (last error: {last_error:?})",
            got.len()
        );
        // A topic just created may not have its leaders yet
        // (LEADER_NOT_AVAILABLE): retriable.
        match c.poll(Duration::from_millis(200)).await {
            Ok(records) => got.extend(records),
            Err(e) => {
                last_error = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Anything beyond `want` would be a duplicate: look a little longer.
    got.extend(c.poll(Duration::from_millis(500)).await?);
    Ok(got)
}

/// Whatever `topic` holds now: its records from the start, read until a
/// poll of one second brings nothing more (for diagnosing a short read).
pub async fn read_available(bootstrap: &str, topic: &str) -> Result<Vec<ConsumerRecord>> {
    let mut c = consume_topic(bootstrap, topic).await?;
    let mut got = Vec::new();
    loop {
        let records = c.poll(Duration::from_secs(1)).await?;
        if records.is_empty() {
            return Ok(got);
        }
        got.extend(records);
    }
}
