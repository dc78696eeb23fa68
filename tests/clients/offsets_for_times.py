"""Looks up offsets by timestamp with confluent-kafka or kafka-python.

Expects partition 0 of --topic to hold --count records with timestamps
base + i*1000 (as `confluent_produce.py --timestamp-base` writes them).
"""

from common import check, emit, parser

p = parser(__doc__)
p.add_argument("--topic", required=True)
p.add_argument("--base", type=int, required=True)
p.add_argument("--count", type=int, required=True)
p.add_argument("--client", choices=["confluent", "kafka-python"], required=True)
a = p.parse_args()
base, n = a.base, a.count

# (query timestamp, expected offset or None for "no such record")
cases = [
    (base - 5000, 0),  # before the first record: the first record
    (base, 0),  # exact first
    (base + 3000, 3),  # exact middle
    (base + 3500, 4),  # between records: the next one
    (base + (n - 1) * 1000, n - 1),  # exact last
    (base + n * 1000, None),  # after the last: none
]

if a.client == "confluent":
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "oft", "enable.auto.commit": False})
    for ts, want in cases:
        [r] = c.offsets_for_times([TopicPartition(a.topic, 0, ts)], timeout=10)
        check(r.error is None, f"offsets_for_times({ts}) error {r.error}")
        # librdkafka reports "no record at or after ts" as offset -1 (OFFSET_END).
        got = None if r.offset < 0 else r.offset
        check(got == want, f"confluent offsets_for_times(base{ts - base:+d}) = {r.offset}, expected {want}")
        emit({"ts": ts, "offset": r.offset})
    c.close()
else:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=a.bootstrap, enable_auto_commit=False)
    tp = TopicPartition(a.topic, 0)
    for ts, want in cases:
        r = c.offsets_for_times({tp: ts})[tp]
        if want is None:
            check(r is None, f"kafka-python offsets_for_times(base{ts - base:+d}) = {r}, expected None")
        else:
            check(r is not None, f"kafka-python offsets_for_times(base{ts - base:+d}) = None, expected {want}")
            check(r.offset == want, f"kafka-python offsets_for_times(base{ts - base:+d}) = {r}, expected offset {want}")
            check(r.timestamp == base + want * 1000, f"kafka-python offsets_for_times(base{ts - base:+d}) timestamp {r.timestamp}, expected {base + want * 1000}")
        emit({"ts": ts, "offset": None if r is None else r.offset})
    c.close()
