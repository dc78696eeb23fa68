//! Produces ten keyed records to `events` on a broker at 127.0.0.1:9092.

use weir_client::{Acks, Compression, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> weir_client::Result<()> {
    let producer = ProducerConfig::new("127.0.0.1:9092")
        .acks(Acks::All)
        .compression(Compression::Lz4)
        .idempotent(true)
        .build()
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new("events", format!("hello {i}"))
            .key(format!("user-{}", i % 3))
            .header("source", "example");
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    for d in deliveries {
        let meta = d.await?;
        println!("{}-{}@{}", meta.topic, meta.partition, meta.offset);
    }
    Ok(())
}
