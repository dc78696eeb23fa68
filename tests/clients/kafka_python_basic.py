"""kafka-python: admin (create/delete topics, partitions, configs, groups),
the idempotent producer, and a consumer group commit/resume.
"""

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

from common import check, deadline, emit, fail, parser

p = parser(__doc__)
p.add_argument("--prefix", required=True)
p.add_argument("--count", type=int, default=50)
a = p.parse_args()
topic = f"{a.prefix}-kp"
group = f"{a.prefix}-kp-group"

admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, client_id="kp-admin")
admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1, topic_configs={"retention.ms": "86400000"})])
check(topic in admin.list_topics(), f"{topic} not listed after create")
admin.create_partitions({topic: NewPartitions(3)})


def n_partitions():
    c = KafkaConsumer(bootstrap_servers=a.bootstrap)
    try:
        return len(c.partitions_for_topic(topic) or [])
    finally:
        c.close()


check(n_partitions() == 3, f"partitions after create_partitions: {n_partitions()}")


def retention():
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    text = repr(res)
    for key in ("86400000", "1234567"):
        if f"'retention.ms', '{key}'" in text or f"retention.ms', config_value='{key}'" in text or key in text:
            return key
    return text


check(retention() == "86400000", f"describe_configs retention.ms: {retention()}")
admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "1234567"})])
check(retention() == "1234567", f"retention.ms after alter_configs: {retention()}")

# the idempotent producer (explicitly on; acks=all is required for it)
prod = KafkaProducer(bootstrap_servers=a.bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
futs = [prod.send(topic, key=f"k{i % 5}".encode(), value=f"k{i % 5}:{i // 5}".encode()) for i in range(a.count)]
metas = [f.get(timeout=30) for f in futs]
prod.close()
per_part = {}
for m in metas:
    per_part.setdefault(m.partition, []).append(m.offset)
for part, offs in per_part.items():
    check(sorted(offs) == list(range(len(offs))), f"partition {part}: offsets {sorted(offs)} not dense")

# a group consumer reads everything, commits, and a second one resumes at the end
cons = KafkaConsumer(topic, bootstrap_servers=a.bootstrap, group_id=group, auto_offset_reset="earliest",
                     enable_auto_commit=False, consumer_timeout_ms=20000)
seen = []
for msg in cons:
    seen.append((msg.partition, msg.offset, msg.key.decode(), msg.value.decode()))
    if len(seen) == a.count:
        break
check(len(seen) == a.count, f"kafka-python consumer got {len(seen)} of {a.count}")
last = {}
for part, off, key, value in sorted(seen):
    k, seq = value.split(":")
    check(k == key, f"value {value} under key {key}")
    check(last.get(key, -1) + 1 == int(seq), f"key {key}: seq {seq} after {last.get(key)}")
    last[key] = int(seq)
cons.commit()
cons.close()
offsets = admin.list_group_offsets({group: None})
emit({"group_offsets": repr(offsets)[:500]})
groups = repr(admin.list_groups())
check(group in groups, f"{group} not in list_groups: {groups}")
describe = repr(admin.describe_groups([group]))
check(group in describe, f"describe_groups: {describe}")

# A second member: once it owns partitions (after the group's initial
# rebalance delay), polling yields nothing, since everything is committed.
cons2 = KafkaConsumer(topic, bootstrap_servers=a.bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False)
again = []
expired = deadline(30)
while not cons2.assignment():
    if expired():
        fail("second kafka-python member never got an assignment")
    for recs in cons2.poll(timeout_ms=200).values():
        again.extend(recs)
for _ in range(3):
    for recs in cons2.poll(timeout_ms=300).values():
        again.extend(recs)
positions = {tp.partition: cons2.position(tp) for tp in cons2.assignment()}
cons2.close()
check(not again, f"{len(again)} committed records re-delivered after resume")
emit({"resumed_positions": positions})

# After the last member leaves, the group becomes Empty (DeleteGroups refuses
# a group that is not Empty with NON_EMPTY_GROUP, as Kafka does).
expired = deadline(30)
while "'group_state': 'Empty'" not in repr(admin.describe_groups([group])):
    if expired():
        fail(f"group not Empty after its last member left: {admin.describe_groups([group])}")

emit({"describe_before_delete": repr(admin.describe_groups([group]))[:800]})
emit({"delete_groups": repr(admin.delete_groups([group]))[:300]})
groups = repr(admin.list_groups())
check(group not in groups, f"{group} still listed after delete_groups: {groups}")
admin.delete_topics([topic])
expired = deadline(10)
while topic in admin.list_topics():
    if expired():
        fail(f"{topic} still listed after delete_topics")
admin.close()
emit({"ok": True, "partitions": sorted(per_part)})
