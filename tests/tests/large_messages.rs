//! Large messages: 1 MB records round-trip through confluent-kafka (with the
//! client's size limits raised); records above the topic's
//! `max.message.bytes` are refused with MESSAGE_TOO_LARGE.

use anyhow::{ensure, Result};
use weir_tests::raw::{create_topic, RawConn};
use weir_tests::{recs_from_script, WeirNode};

/// A 1 MiB value on a topic with `max.message.bytes=3000000`, and a 1,000,000
/// byte value on a topic with the default limit (1048588), both round-trip
/// intact; 1,200,000 bytes on the default-limit topic is refused by the broker
/// with MESSAGE_TOO_LARGE (librdkafka: MSG_SIZE_TOO_LARGE, code 10).
#[test]
fn one_megabyte_round_trips_and_oversize_is_refused() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    {
        let mut c = RawConn::connect(node.bootstrap())?;
        ensure!(create_topic(&mut c, "big", 1, &[("max.message.bytes", "3000000")])? == 0);
        ensure!(create_topic(&mut c, "default-limit", 1, &[])? == 0);
    }
    let produce = |node: &mut WeirNode, topic: &str, size: &str, extra: &[&str]| {
        let mut args = vec![
            "--topic",
            topic,
            "--count",
            "2",
            "--keys",
            "1",
            "--value-size",
            size,
            "--max-message-bytes",
            "5000000",
            "--compression",
            "none",
        ];
        args.extend_from_slice(extra);
        node.python("confluent_produce", &args)
    };
    let consume = |node: &mut WeirNode, topic: &str| {
        node.python(
            "confluent_consume",
            &[
                "--topic",
                topic,
                "--expect",
                "2",
                "--max-bytes",
                "4000000",
                "--print-values",
                "false",
            ],
        )
    };
    produce(&mut node, "big", "1048576", &[])?;
    let out = consume(&mut node, "big")?;
    for r in recs_from_script(&out)? {
        ensure!(r.key.as_deref() == Some("k0"), "{r:?}");
    }
    ensure!(
        String::from_utf8_lossy(&out.stdout)
            .matches("\"len\": 1048576")
            .count()
            == 2,
        "1 MiB values did not come back whole:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    produce(&mut node, "default-limit", "1000000", &[])?;
    let out = consume(&mut node, "default-limit")?;
    ensure!(
        String::from_utf8_lossy(&out.stdout)
            .matches("\"len\": 1000000")
            .count()
            == 2,
        "1 MB values did not come back whole"
    );

    let out = produce(
        &mut node,
        "default-limit",
        "1200000",
        &["--expect-error", "MSG_SIZE_TOO_LARGE"],
    )?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("\"code\": 10"),
        "expected error code 10: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nothing of the refused records was written.
    let out = consume(&mut node, "default-limit")?;
    ensure!(recs_from_script(&out)?.len() == 2);
    node.assert_alive()
}
