//! Every compression codec, produced by one client and consumed by another:
//! kcat `-z` → confluent-kafka, and confluent-kafka `compression.type` → kcat.
//! The stored batches are checked (raw Fetch) to really carry the codec. Values
//! are padded to be compressible: librdkafka sends a batch uncompressed when
//! compression would not shrink it.
//!
//! kcat here links librdkafka 2.0.2, which only compresses gzip/snappy/lz4 when
//! the broker advertises Produce v0 (Weir, like Kafka 4.0, starts at v3): it
//! logs "Broker does not support compression type" and sends those batches
//! uncompressed. So kcat's batches must carry its codec or none (zstd: its
//! codec); confluent-kafka 2.16 compresses with every codec.

use anyhow::{ensure, Result};
use weir_tests::raw::{batch_headers, fetch, RawConn};
use weir_tests::{
    check_keyed, kcat_keyed_input_padded, recs_from_kcat, recs_from_script, NodeOpts, WeirNode,
};

const CODECS: [(&str, i16); 5] = [
    ("none", 0),
    ("gzip", 1),
    ("snappy", 2),
    ("lz4", 3),
    ("zstd", 4),
];

/// Checks that every batch of every partition of `topic` uses codec `id` (or
/// none, when `or_none`).
fn assert_codec(
    node: &WeirNode,
    topic: &str,
    partitions: i32,
    id: i16,
    or_none: bool,
) -> Result<()> {
    let mut conn = RawConn::connect(node.bootstrap())?;
    let mut batches = 0;
    for p in 0..partitions {
        let (err, records) = fetch(&mut conn, topic, p, 0)?;
        ensure!(err == 0, "fetch {topic}/{p}: error {err}");
        for (_, _, attrs) in batch_headers(&records) {
            let codec = attrs & 7;
            ensure!(
                codec == id || (or_none && codec == 0),
                "{topic}/{p}: batch codec {codec}, expected {id}"
            );
            batches += 1;
        }
    }
    ensure!(batches > 0, "{topic}: no batches fetched");
    Ok(())
}

/// For each codec: 60 keyed messages from kcat `-z <codec>` are consumed intact
/// (order, keys, dense offsets) by confluent-kafka, and 60 from confluent-kafka
/// with `compression.type=<codec>` are consumed intact by kcat.
#[test]
fn every_codec_round_trips_between_clients() -> Result<()> {
    let mut node = WeirNode::start(NodeOpts::default().arg("--default-partitions", 2))?;
    let input = kcat_keyed_input_padded(60, 6, 300);
    for (codec, id) in CODECS {
        let topic = format!("z-kcat-{codec}");
        node.kcat(
            &["-P", "-t", &topic, "-K:", "-z", codec, "-X", "linger.ms=20"],
            input.as_bytes(),
        )?;
        let out = node.python("confluent_consume", &["--topic", &topic, "--expect", "60"])?;
        check_keyed(&recs_from_script(&out)?, 60)
            .map_err(|e| e.context(format!("kcat -z {codec}")))?;
        assert_codec(&node, &topic, 2, id, codec != "zstd")?;

        let topic = format!("z-confluent-{codec}");
        node.python(
            "confluent_produce",
            &[
                "--topic",
                &topic,
                "--count",
                "60",
                "--keys",
                "6",
                "--compression",
                codec,
                "--value-size",
                "300",
            ],
        )?;
        let out = node.kcat(
            &["-C", "-t", &topic, "-o", "beginning", "-e", "-J", "-q"],
            b"",
        )?;
        check_keyed(&recs_from_kcat(&out)?, 60)
            .map_err(|e| e.context(format!("confluent compression.type={codec}")))?;
        assert_codec(&node, &topic, 2, id, false)?;
    }
    node.assert_alive()
}
