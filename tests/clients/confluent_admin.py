"""Admin operations with confluent-kafka's AdminClient: create/delete topics,
create partitions, describe/alter/incrementally-alter configs, list/describe/
delete groups, list group offsets, delete records. Each result is checked
against what a client then observes.
"""

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from common import check, deadline, emit, fail, parser

p = parser(__doc__)
p.add_argument("--prefix", required=True)
a = p.parse_args()
T = 30
admin = AdminClient({"bootstrap.servers": a.bootstrap})
t1, t2 = f"{a.prefix}-one", f"{a.prefix}-two"
group = f"{a.prefix}-group"


def partitions(topic):
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        return None
    return len(md.partitions)


def topic_configs(topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(T).items()}


# create topics (one with a config), a duplicate fails with TOPIC_ALREADY_EXISTS
fs = admin.create_topics([
    NewTopic(t1, num_partitions=2, replication_factor=1, config={"retention.ms": "3600000"}),
    NewTopic(t2, num_partitions=1, replication_factor=1),
])
for t, f in fs.items():
    f.result(T)
check(partitions(t1) == 2 and partitions(t2) == 1, f"partitions after create: {partitions(t1)}, {partitions(t2)}")
try:
    admin.create_topics([NewTopic(t1, num_partitions=1, replication_factor=1)])[t1].result(T)
    fail("creating an existing topic succeeded")
except Exception as e:  # KafkaException(TOPIC_ALREADY_EXISTS)
    check("TOPIC_ALREADY_EXISTS" in str(e) or "already exists" in str(e), f"duplicate create: {e}")

# create partitions
admin.create_partitions([NewPartitions(t1, 4)])[t1].result(T)
check(partitions(t1) == 4, f"partitions after create_partitions: {partitions(t1)}")

# explicit replica assignments: the partition count comes from them; a broker
# that does not exist is refused with INVALID_REPLICA_ASSIGNMENT; CreatePartitions
# takes assignments too
t3 = t1 + "-assigned"
admin.create_topics([NewTopic(t3, num_partitions=4, replication_factor=-1, replica_assignment=[[0], [0], [0], [0]])])[t3].result(T)
check(partitions(t3) == 4, f"partitions after create with 4 assignments: {partitions(t3)}")
for bad in ([[7]], [[0, 0]]):
    try:
        admin.create_topics([NewTopic(t3 + "-bad", num_partitions=len(bad), replication_factor=-1, replica_assignment=bad)])[t3 + "-bad"].result(T)
        fail(f"replica assignment {bad} accepted")
    except Exception as e:
        check("INVALID_REPLICA_ASSIGNMENT" in str(e), f"assignment {bad}: {e}")
admin.create_partitions([NewPartitions(t3, 6, replica_assignment=[[0], [0]])])[t3].result(T)
check(partitions(t3) == 6, f"partitions after create_partitions with assignments: {partitions(t3)}")
try:
    admin.create_partitions([NewPartitions(t3, 7, replica_assignment=[[3]])])[t3].result(T)
    fail("create_partitions onto a missing broker accepted")
except Exception as e:
    check("INVALID_REPLICA_ASSIGNMENT" in str(e), f"create_partitions onto broker 3: {e}")
admin.delete_topics([t3])[t3].result(T)

# every Kafka topic config is accepted at creation; compression.type is honoured
# (batches are stored recompressed and read back), the rest are described
t4 = t1 + "-configs"
admin.create_topics([NewTopic(t4, num_partitions=1, replication_factor=1, config={
    "compression.type": "zstd", "min.insync.replicas": "1", "file.delete.delay.ms": "1000",
    "min.cleanable.dirty.ratio": "0.3", "min.compaction.lag.ms": "0", "max.compaction.lag.ms": "86400000",
    "message.timestamp.before.max.ms": "86400000000", "message.timestamp.after.max.ms": "3600000",
    "segment.jitter.ms": "0", "flush.messages": "1", "flush.ms": "1000",
    "unclean.leader.election.enable": "false", "preallocate": "false",
})])[t4].result(T)
c = topic_configs(t4)
check(c.get("compression.type") == "zstd" and c.get("min.insync.replicas") == "1" and c.get("preallocate") == "false",
      f"configs of {t4}: {c}")
p = Producer({"bootstrap.servers": a.bootstrap, "compression.type": "none"})
for i in range(20):
    p.produce(t4, key=f"k{i}", value=f"recompressed-{i}")
check(p.flush(T) == 0, "produce to the zstd topic")
cons = Consumer({"bootstrap.servers": a.bootstrap, "group.id": t4 + "-g", "auto.offset.reset": "earliest"})
cons.assign([TopicPartition(t4, 0, 0)])
got = []
expired = deadline(20)
while len(got) < 20 and not expired():
    m = cons.poll(1)
    if m is not None and not m.error():
        got.append(m.value().decode())
cons.close()
check(got == [f"recompressed-{i}" for i in range(20)], f"read back from the zstd topic: {got}")
try:
    admin.create_topics([NewTopic(t4 + "-bad", num_partitions=1, replication_factor=1, config={"min.insync.replicas": "0"})])[t4 + "-bad"].result(T)
    fail("min.insync.replicas=0 accepted")
except Exception as e:
    check("INVALID_CONFIG" in str(e), f"min.insync.replicas=0: {e}")
admin.delete_topics([t4])[t4].result(T)

# the BROKER resource describes the node's real settings, marked default or given
res = ConfigResource(ConfigResource.Type.BROKER, "0")
b = admin.describe_configs([res])[res].result(T)
check(b["num.partitions"].value == "1" and b["num.partitions"].is_default, f"num.partitions: {b.get('num.partitions')}")
check(not b["log.dirs"].is_default and b["log.dirs"].value.endswith("logs"), f"log.dirs: {b.get('log.dirs')}")
check(b["broker.id"].value == "0", f"broker.id: {b.get('broker.id')}")
# the offsets topic settings say what the node made of __consumer_offsets
offsets = admin.list_topics("__consumer_offsets", timeout=T).topics["__consumer_offsets"].partitions
check(b["offsets.topic.num.partitions"].value == str(len(offsets)),
      f"offsets.topic.num.partitions {b['offsets.topic.num.partitions'].value}, the topic has {len(offsets)}")
check(b["offsets.topic.replication.factor"].value == str(len(offsets[0].replicas)),
      f"offsets.topic.replication.factor {b['offsets.topic.replication.factor'].value}, the topic has {len(offsets[0].replicas)}")

# Weir has no dynamic broker configs. Security settings are accepted with no
# effect until Weir has TLS and SASL (librdkafka's test 0081 sets one and
# expects success); a change to one of the node's own settings is refused
# as Kafka refuses a static config (INVALID_REQUEST), and a name the node
# does not know with INVALID_CONFIG (found from outside: the Java
# AdminClient's `SET log.retention.ms` and `SET node.id` were accepted and
# did nothing).
res = ConfigResource(ConfigResource.Type.BROKER, "0", set_config={"sasl.kerberos.min.time.before.relogin": "58000"})
admin.alter_configs([res])[res].result(T)
res = ConfigResource(ConfigResource.Type.BROKER, "0", incremental_configs=[
    ConfigEntry("sasl.kerberos.min.time.before.relogin", "58000", incremental_operation=AlterConfigOpType.SET)])
admin.incremental_alter_configs([res])[res].result(T)
for key, value, code in [("log.retention.ms", "86400000", "INVALID_REQUEST"),
                         ("node.id", "7", "INVALID_REQUEST"),
                         ("no.such.key", "1", "INVALID_CONFIG")]:
    res = ConfigResource(ConfigResource.Type.BROKER, "0", incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    try:
        admin.incremental_alter_configs([res])[res].result(T)
        fail(f"broker config {key}={value} accepted")
    except KafkaException as e:
        check(e.args[0].name() == code and key in e.args[0].str(),
              f"broker config {key}={value}: {e} (want {code} naming it)")
res = ConfigResource(ConfigResource.Type.BROKER, "0")
check(admin.describe_configs([res])[res].result(T)["log.retention.ms"].value == "604800000",
      "log.retention.ms changed")

# incremental APPEND onto a list config starts from its current (default) value
res = ConfigResource(
    ConfigResource.Type.TOPIC,
    t2,
    incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)],
)
admin.incremental_alter_configs([res])[res].result(T)
policy = topic_configs(t2).get("cleanup.policy")
check(sorted(policy.split(",")) == ["compact", "delete"], f"cleanup.policy after APPEND compact: {policy}")
res = ConfigResource(
    ConfigResource.Type.TOPIC,
    t2,
    incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT)],
)
admin.incremental_alter_configs([res])[res].result(T)
check(topic_configs(t2).get("cleanup.policy") == "delete", f"after SUBTRACT: {topic_configs(t2).get('cleanup.policy')}")

# describe / alter / incremental alter configs
c = topic_configs(t1)
check(c.get("retention.ms") == "3600000", f"retention.ms after create: {c.get('retention.ms')}")
res = ConfigResource(ConfigResource.Type.TOPIC, t1, set_config={"retention.ms": "7200000", "cleanup.policy": "delete"})
admin.alter_configs([res])[res].result(T)
c = topic_configs(t1)
check(c.get("retention.ms") == "7200000", f"retention.ms after alter_configs: {c.get('retention.ms')}")
res = ConfigResource(
    ConfigResource.Type.TOPIC,
    t1,
    incremental_configs=[ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)],
)
admin.incremental_alter_configs([res])[res].result(T)
c = topic_configs(t1)
check(c.get("retention.ms") == "60000", f"retention.ms after incremental_alter_configs: {c.get('retention.ms')}")
check(c.get("cleanup.policy") == "delete", f"cleanup.policy after incremental alter: {c.get('cleanup.policy')}")
bad = ConfigResource(ConfigResource.Type.TOPIC, t1, set_config={"retention.ms": "soon"})
try:
    admin.alter_configs([bad])[bad].result(T)
    fail("alter_configs accepted retention.ms=soon")
except Exception as e:
    check("INVALID_CONFIG" in str(e) or "nvalid" in str(e), f"bad config: {e}")

# produce 10 records to t2, delete records before offset 4
prod = Producer({"bootstrap.servers": a.bootstrap})
for i in range(10):
    prod.produce(t2, value=f"v{i}".encode(), partition=0)
check(prod.flush(T) == 0, "produce did not finish")
res = admin.delete_records([TopicPartition(t2, 0, 4)])
[(tp, f)] = list(res.items())
r = f.result(T)
check(r.low_watermark == 4, f"delete_records low watermark {r.low_watermark}")
cons = Consumer({"bootstrap.servers": a.bootstrap, "group.id": group, "enable.auto.commit": False})
lo, hi = cons.get_watermark_offsets(TopicPartition(t2, 0), timeout=10)
check((lo, hi) == (4, 10), f"watermarks after delete_records: {(lo, hi)}")

# groups: commit offsets for a group, then list / describe / list offsets / delete
committed = cons.commit(offsets=[TopicPartition(t2, 0, 7), TopicPartition(t1, 1, 0)], asynchronous=False)
for tp in committed:
    check(tp.error is None, f"commit error {tp.error}")
cons.close()
groups = [g.group_id for g in admin.list_consumer_groups().result(T).valid]
check(group in groups, f"{group} not in list_consumer_groups: {groups}")
[d] = admin.describe_consumer_groups([group])[group].result(T), 
check(d.group_id == group and not d.members, f"describe_consumer_groups: {d}")
# With no authorizer every operation is allowed, and reported (as Kafka does).
[d] = admin.describe_consumer_groups([group], include_authorized_operations=True)[group].result(T),
ops = sorted(str(o).split(".")[-1] for o in (d.authorized_operations or []))
check(ops == ["DELETE", "DESCRIBE", "READ"], f"group authorized operations: {ops}")
cluster = admin.describe_cluster(include_authorized_operations=True).result(T)
ops = sorted(str(o).split(".")[-1] for o in (cluster.authorized_operations or []))
check(ops == sorted(["ALTER", "ALTER_CONFIGS", "CLUSTER_ACTION", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE"]), f"cluster authorized operations: {ops}")
check(len(cluster.nodes) == 1 and cluster.controller is not None, f"describe_cluster: {cluster}")
desc = admin.describe_topics(TopicCollection([t1]), include_authorized_operations=True)[t1].result(T)
ops = sorted(str(o).split(".")[-1] for o in (desc.authorized_operations or []))
check(ops == sorted(["ALTER", "ALTER_CONFIGS", "CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE"]), f"topic authorized operations: {ops}")
check(len(desc.partitions) == 4, f"describe_topics partitions: {desc.partitions}")
emit({"group_state": str(d.state)})
req = ConsumerGroupTopicPartitions(group)
offs = admin.list_consumer_group_offsets([req])[group].result(T)
got = sorted((tp.topic, tp.partition, tp.offset) for tp in offs.topic_partitions)
check((t2, 0, 7) in got and (t1, 1, 0) in got, f"list_consumer_group_offsets: {got}")
admin.delete_consumer_groups([group])[group].result(T)
groups = [g.group_id for g in admin.list_consumer_groups().result(T).valid]
check(group not in groups, f"{group} still listed after delete: {groups}")

# delete topics
for t, f in admin.delete_topics([t1, t2]).items():
    f.result(T)
# List all topics: a Metadata request naming a deleted topic would auto-create
# it again (AdminClient handles are producers: allow.auto.create.topics=true).
expired = deadline(10)
while {t1, t2} & set(admin.list_topics(timeout=10).topics):
    if expired():
        fail("topics still in metadata after delete_topics")
emit({"ok": True})
