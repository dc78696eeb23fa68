//! Consumes `events` as a member of group `example-group`, committing manually.

use std::time::Duration;

use weir_client::{ConsumerConfig, OffsetReset};

#[tokio::main]
async fn main() -> weir_client::Result<()> {
    let mut consumer = ConsumerConfig::new("127.0.0.1:9092")
        .group("example-group")
        .auto_offset_reset(OffsetReset::Earliest)
        .auto_commit(false)
        .build()
        .await?;
    consumer.subscribe(&["events"])?;
    for _ in 0..10 {
        for r in consumer.poll(Duration::from_secs(1)).await? {
            let value = r
                .value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!("{}-{}@{}: {value}", r.topic, r.partition, r.offset);
        }
        consumer.commit().await?;
    }
    consumer.close().await
}
