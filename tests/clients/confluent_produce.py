"""Produces keyed messages with confluent-kafka and checks every delivery report.

Values are "<key>:<seq>" where seq counts per key, so the consumer side can
check per-key order. Prints one JSON line per delivered message.
"""

from confluent_kafka import Producer

from common import check, emit, fail, parser

p = parser(__doc__)
p.add_argument("--topic", required=True)
p.add_argument("--count", type=int, default=100)
p.add_argument("--keys", type=int, default=10)
p.add_argument("--compression", default="none")
p.add_argument("--acks", default="all")
p.add_argument("--idempotence", default="false")
p.add_argument("--value-size", type=int, default=0, help="pad values to this size")
p.add_argument("--partition", type=int, default=-1)
p.add_argument("--timestamp-base", type=int, default=0, help="explicit timestamps base+i*1000")
p.add_argument("--expect-error", default="", help="expect every delivery to fail with this KafkaError name")
p.add_argument("--max-message-bytes", type=int, default=0)
p.add_argument("--interval-ms", type=float, default=0, help="pause between messages (a paced producer)")
a = p.parse_args()

conf = {
    "bootstrap.servers": a.bootstrap,
    "compression.type": a.compression,
    "acks": a.acks,
    "enable.idempotence": a.idempotence == "true",
    "linger.ms": 5,
    "message.timeout.ms": 30000,
}
if a.max_message_bytes:
    conf["message.max.bytes"] = a.max_message_bytes
producer = Producer(conf)
delivered = []
errors = []


failed_partitions = {}


def on_delivery(err, msg):
    if err is not None:
        errors.append(err)
        failed_partitions[msg.partition()] = failed_partitions.get(msg.partition(), 0) + 1
    else:
        delivered.append(msg)


seqs = {}
for i in range(a.count):
    key = f"k{i % a.keys}"
    seq = seqs.get(key, 0)
    seqs[key] = seq + 1
    value = f"{key}:{seq}".encode()
    if a.value_size:
        value = value + b"." * (a.value_size - len(value))
    kwargs = {"key": key.encode(), "value": value, "on_delivery": on_delivery}
    if a.partition >= 0:
        kwargs["partition"] = a.partition
    if a.timestamp_base:
        kwargs["timestamp"] = a.timestamp_base + i * 1000
    while True:
        try:
            producer.produce(a.topic, **kwargs)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(a.interval_ms / 1000.0)
left = producer.flush(30)
check(left == 0, f"{left} messages still in flight after flush")

if a.expect_error:
    check(not delivered, f"{len(delivered)} messages were delivered, expected {a.expect_error}")
    names = {e.name() for e in errors}
    check(names == {a.expect_error}, f"delivery errors {names}, expected {a.expect_error}")
    for e in errors:
        emit({"error": e.name(), "code": e.code()})
else:
    if errors:
        fail(f"{len(errors)} delivery errors, first: {errors[0]}; by partition: {failed_partitions}")
    check(len(delivered) == a.count, f"{len(delivered)} delivery reports, expected {a.count}")
    for m in delivered:
        emit({"partition": m.partition(), "offset": m.offset(), "key": m.key().decode()})
