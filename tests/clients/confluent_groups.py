"""Consumer groups with confluent-kafka.

Two members split a 4-partition topic; one leaves (close) and the other gets
every partition; it commits offsets (5 per partition) and closes; a new member
of the same group resumes from the committed offsets, with no committed record
delivered again. Prints JSON lines describing each phase.
"""

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import check, deadline, emit, fail, parser

p = parser(__doc__)
p.add_argument("--topic", required=True)
p.add_argument("--group", required=True)
p.add_argument("--per-partition", type=int, default=10)
p.add_argument("--commit-at", type=int, default=5)
a = p.parse_args()
PARTS = 4

admin = AdminClient({"bootstrap.servers": a.bootstrap})
fs = admin.create_topics([NewTopic(a.topic, num_partitions=PARTS, replication_factor=1)])
fs[a.topic].result(30)

prod = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 2})
for part in range(PARTS):
    for i in range(a.per_partition):
        prod.produce(a.topic, value=f"p{part}-{i}".encode(), partition=part)
check(prod.flush(30) == 0, "produce did not finish")


def consumer(name):
    return Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": "range",
        "enable.partition.eof": False,
    })


def assigned(c):
    return sorted(tp.partition for tp in c.assignment())


def poll_all(members, seconds, until, what):
    """Polls every member in turn until `until()` holds; returns consumed messages."""
    got = {id(m): [] for m in members}
    expired = deadline(seconds)
    while not until():
        if expired():
            fail(f"timed out waiting for {what}; assignments {[assigned(m) for m in members]}")
        for m in members:
            msg = m.poll(0.1)
            if msg is not None:
                if msg.error():
                    fail(f"consume error: {msg.error()}")
                got[id(m)].append(msg)
    return got


c1 = consumer("c1")
c2 = consumer("c2")
c1.subscribe([a.topic])
c2.subscribe([a.topic])

# Phase 1: the two members split the partitions (disjoint, covering all, both non-empty).
def split():
    x, y = assigned(c1), assigned(c2)
    return x and y and sorted(x + y) == list(range(PARTS))

poll_all([c1, c2], 60, split, "two members to split the partitions")
emit({"phase": "split", "c1": assigned(c1), "c2": assigned(c2)})

# Phase 2: c2 leaves; c1 gets every partition.
c2.close()
poll_all([c1], 60, lambda: assigned(c1) == list(range(PARTS)), "c1 to get all partitions")
emit({"phase": "after_leave", "c1": assigned(c1)})

# Phase 3: c1 commits offset commit-at for every partition (synchronously) and closes.
offsets = [TopicPartition(a.topic, part, a.commit_at) for part in range(PARTS)]
res = c1.commit(offsets=offsets, asynchronous=False)
for tp in res:
    check(tp.error is None, f"commit error for partition {tp.partition}: {tp.error}")
committed = c1.committed([TopicPartition(a.topic, part) for part in range(PARTS)], timeout=10)
check(
    sorted((tp.partition, tp.offset) for tp in committed) == [(part, a.commit_at) for part in range(PARTS)],
    f"committed offsets read back as {[(tp.partition, tp.offset) for tp in committed]}",
)
c1.close()

# Phase 4: a new member of the group resumes from the committed offsets.
c3 = consumer("c3")
c3.subscribe([a.topic])
want = PARTS * (a.per_partition - a.commit_at)
seen = []


def enough():
    return len(seen) >= want


expired = deadline(60)
while not enough():
    if expired():
        fail(f"c3 got {len(seen)} of {want} records; assignment {assigned(c3)}")
    msg = c3.poll(0.2)
    if msg is None:
        continue
    if msg.error():
        fail(f"consume error: {msg.error()}")
    seen.append((msg.partition(), msg.offset(), msg.value().decode()))
# Anything re-delivered or extra would arrive within a short extra poll.
for _ in range(3):
    msg = c3.poll(0.2)
    if msg is not None and not msg.error():
        seen.append((msg.partition(), msg.offset(), msg.value().decode()))
c3.close()
for part, off, value in seen:
    check(off >= a.commit_at, f"committed record {part}:{off} ({value}) delivered again")
    check(value == f"p{part}-{off}", f"record {part}:{off} has value {value}")
check(len(seen) == want, f"c3 got {len(seen)} records, expected {want}")
check(len(set(seen)) == len(seen), "duplicate deliveries to c3")
emit({"phase": "resumed", "records": len(seen)})
