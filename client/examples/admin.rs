//! Creates a topic, describes it, and lists its end offsets.

use weir_client::{Admin, ClientConfig, NewTopic, OffsetSpec};

#[tokio::main]
async fn main() -> weir_client::Result<()> {
    let admin = Admin::connect(ClientConfig::new("127.0.0.1:9092")).await?;
    admin.create_topic(NewTopic::new("events", 3), true).await?;
    for t in admin.describe_topics(&["events".to_string()]).await? {
        for p in &t.partitions {
            println!("{}-{} leader {}", t.name, p.partition, p.leader);
        }
    }
    let tps = admin.partitions("events").await?;
    for (tp, o) in admin.list_offsets(&tps, OffsetSpec::Latest).await? {
        println!("{tp} end offset {}", o.offset);
    }
    println!("topics: {:?}", admin.list_topics(false).await?);
    Ok(())
}
