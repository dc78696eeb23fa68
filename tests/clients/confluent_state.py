"""Writes, or verifies, the state a restart must keep: a 3-partition topic with
retention.ms=12345, records "p<partition>-<offset>" in every partition, and a
group's committed offsets {0: 2, 1: 3, 2: 4}.

--mode write creates it all (10 records per partition, acks=all).
--mode verify checks it, then appends one record per partition and checks its
offset continues the log (so the next verify expects one more per partition).
"""

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from common import check, deadline, emit, fail, parser

p = parser(__doc__)
p.add_argument("--mode", choices=["write", "verify"], required=True)
p.add_argument("--topic", required=True)
p.add_argument("--group", required=True)
p.add_argument("--per-partition", type=int, default=10)
a = p.parse_args()
PARTS, T = 3, 30
COMMITS = {0: 2, 1: 3, 2: 4}
admin = AdminClient({"bootstrap.servers": a.bootstrap})
prod = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "linger.ms": 2})


def produce(part, offsets):
    delivered = []
    for off in offsets:
        prod.produce(a.topic, value=f"p{part}-{off}".encode(), partition=part,
                     on_delivery=lambda err, msg: delivered.append((err, msg.offset() if msg else None)))
    check(prod.flush(T) == 0, "produce did not finish")
    for (err, got), want in zip(delivered, offsets):
        check(err is None, f"delivery error {err}")
        check(got == want, f"partition {part}: record landed at {got}, expected {want}")


if a.mode == "write":
    admin.create_topics([NewTopic(a.topic, num_partitions=PARTS, replication_factor=1,
                                  config={"retention.ms": "12345"})])[a.topic].result(T)
    for part in range(PARTS):
        produce(part, range(a.per_partition))
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group, "enable.auto.commit": False})
    for tp in c.commit(offsets=[TopicPartition(a.topic, q, o) for q, o in COMMITS.items()], asynchronous=False):
        check(tp.error is None, f"commit error {tp.error}")
    c.close()
    emit({"written": True})
else:
    md = admin.list_topics(timeout=10).topics.get(a.topic)
    check(md is not None, f"topic {a.topic} lost")
    check(len(md.partitions) == PARTS, f"{len(md.partitions)} partitions, expected {PARTS}")
    res = ConfigResource(ConfigResource.Type.TOPIC, a.topic)
    conf = admin.describe_configs([res])[res].result(T)
    check(conf["retention.ms"].value == "12345", f"retention.ms is {conf['retention.ms'].value}")
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group, "enable.auto.commit": False})
    committed = c.committed([TopicPartition(a.topic, q) for q in range(PARTS)], timeout=10)
    got = {tp.partition: tp.offset for tp in committed}
    check(got == COMMITS, f"committed offsets {got}, expected {COMMITS}")
    c.assign([TopicPartition(a.topic, q, OFFSET_BEGINNING) for q in range(PARTS)])
    want = PARTS * a.per_partition
    seen = []
    expired = deadline(T)
    while len(seen) < want:
        if expired():
            fail(f"read back {len(seen)} of {want} records")
        for m in c.consume(100, 0.5):
            if m.error():
                fail(f"consume error {m.error()}")
            seen.append((m.partition(), m.offset(), m.value().decode()))
    c.close()
    for part, off, value in seen:
        check(value == f"p{part}-{off}", f"record {part}:{off} is {value!r}")
    check(sorted(seen) == sorted(set(seen)) and len(seen) == want, "duplicate or missing records")
    for part in range(PARTS):
        produce(part, [a.per_partition])
    emit({"verified": want})
