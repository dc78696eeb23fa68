"""Consumes a topic from the beginning of every partition with confluent-kafka
(assign, no group) until --expect messages arrived; prints one JSON line each.
Fails if more or fewer arrive within the time limit.
"""

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from common import check, deadline, emit, fail, parser

p = parser(__doc__)
p.add_argument("--topic", required=True)
p.add_argument("--expect", type=int, required=True)
p.add_argument("--timeout", type=float, default=30)
p.add_argument("--max-bytes", type=int, default=0)
p.add_argument("--print-values", default="true")
a = p.parse_args()

conf = {
    "bootstrap.servers": a.bootstrap,
    "group.id": "unused-assign-only",
    "enable.auto.commit": False,
    "enable.partition.eof": False,
}
if a.max_bytes:
    conf["fetch.max.bytes"] = a.max_bytes
    conf["max.partition.fetch.bytes"] = a.max_bytes
    conf["receive.message.max.bytes"] = a.max_bytes + 1000000
c = Consumer(conf)
md = c.list_topics(a.topic, timeout=10)
t = md.topics.get(a.topic)
check(t is not None and t.error is None, f"topic {a.topic} not in metadata: {t and t.error}")
c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)])
got = 0
expired = deadline(a.timeout)
while got < a.expect and not expired():
    for m in c.consume(100, 0.5):
        if m.error():
            fail(f"consume error: {m.error()}")
        got += 1
        rec = {
            "partition": m.partition(),
            "offset": m.offset(),
            "key": m.key().decode() if m.key() is not None else None,
            "timestamp": m.timestamp()[1],
            "len": len(m.value() or b""),
        }
        if a.print_values == "true":
            rec["value"] = (m.value() or b"").decode(errors="replace")
        emit(rec)
# Anything beyond what was expected shows up within one more short poll.
extra = [m for m in c.consume(100, 0.3) if not m.error()]
c.close()
check(got == a.expect, f"consumed {got} messages, expected {a.expect}")
check(not extra, f"{len(extra)} messages more than the {a.expect} expected")
