#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/seeds/ from real clients against a real node.

Starts `weir broker` on loopback behind a recording TCP proxy (the node advertises
the proxy, so every connection goes through it), runs kcat, the weir CLI (the
weir-client crate), confluent-kafka (librdkafka) and kafka-python through it, then
stops the node cleanly and writes:

  seeds/request_frame/     request frames as captured (after the 4-byte length)
  seeds/client_response/   [api index][version - min][response after the correlation id]
                           for the (API, version) pairs the weir client speaks
  seeds/batch_append/      [flags][RecordBatch...] taken from the node's segment files
  seeds/segment_recovery/  segment files of the node in the target's input layout

Run with a Python that has confluent_kafka and kafka (kafka-python), e.g.
  target/pyenv/bin/python fuzz/scripts/capture_seeds.py
Needs: target/debug/weir (cargo build -p weir-broker --bin weir) and kcat.
Loopback only; ports 39092 (node), 39093 (proxy), 39644 (admin).
"""

import argparse
import asyncio
import collections
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FUZZ = HERE.parent
REPO = FUZZ.parent
NODE_PORT, PROXY_PORT, ADMIN_PORT = 39092, 39093, 39644
PROXY = f"127.0.0.1:{PROXY_PORT}"

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 8: "offset_commit",
    9: "offset_fetch", 10: "find_coordinator", 11: "join_group", 12: "heartbeat",
    13: "leave_group", 14: "sync_group", 15: "describe_groups", 16: "list_groups",
    18: "api_versions", 19: "create_topics", 20: "delete_topics", 21: "delete_records",
    22: "init_producer_id", 23: "offset_for_leader_epoch", 32: "describe_configs",
    33: "alter_configs", 37: "create_partitions", 42: "delete_groups",
    44: "incremental_alter_configs", 47: "offset_delete",
}

# fuzz_targets/client_response.rs APIS, in order: (api key, client max version, crate min version)
CLIENT_APIS = [
    (18, 3, 0), (3, 12, 0), (0, 11, 3), (1, 12, 4), (2, 7, 1), (10, 4, 0), (11, 7, 0),
    (14, 5, 0), (12, 4, 0), (13, 4, 0), (8, 8, 2), (9, 8, 1), (22, 4, 0), (19, 7, 2),
    (20, 5, 1), (37, 3, 0), (32, 4, 1), (44, 1, 0), (16, 4, 0), (15, 5, 0), (42, 2, 0),
    (21, 2, 0),
]


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (client tag, api, version, frame)
        self.responses = []  # (client tag, api, version, frame)
        self.tag = "setup"


REC = Recorder()


async def pipe(conn_reader, conn_writer, up_reader, up_writer):
    pending = {}

    async def c2u():
        while True:
            head = await conn_reader.readexactly(4)
            body = await conn_reader.readexactly(int.from_bytes(head, "big"))
            if len(body) >= 8:
                api, ver, corr = struct.unpack(">hhi", body[:8])
                pending[corr] = (api, ver)
                with REC.lock:
                    REC.requests.append((REC.tag, api, ver, body))
            up_writer.write(head + body)
            await up_writer.drain()

    async def u2c():
        while True:
            head = await up_reader.readexactly(4)
            body = await up_reader.readexactly(int.from_bytes(head, "big"))
            corr = struct.unpack(">i", body[:4])[0] if len(body) >= 4 else None
            api, ver = pending.pop(corr, (None, None))
            if api is not None:
                with REC.lock:
                    REC.responses.append((REC.tag, api, ver, body))
            conn_writer.write(head + body)
            await conn_writer.drain()

    tasks = [asyncio.ensure_future(c2u()), asyncio.ensure_future(u2c())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    for w in (conn_writer, up_writer):
        w.close()


async def serve_proxy(ready):
    async def handle(reader, writer):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", NODE_PORT)
        except OSError:
            writer.close()
            return
        await pipe(reader, writer, ur, uw)

    server = await asyncio.start_server(handle, "127.0.0.1", PROXY_PORT)
    ready.set()
    async with server:
        await server.serve_forever()


def start_proxy():
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=lambda: loop.run_until_complete(serve_proxy(ready)), daemon=True)
    t.start()
    ready.wait(10)


def run(tag, cmd, stdin=None, timeout=60, check=False):
    REC.tag = tag
    print(f"[{tag}] {' '.join(cmd)}", flush=True)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        print(f"  exit {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}", flush=True)
        if check:
            raise SystemExit(1)
    return p


def lines(n, prefix):
    return "".join(f"{prefix}-k{i}:{prefix} value {i} " + "x" * (i * 7 % 50) + "\n" for i in range(n)).encode()


def scenario_cli(weir):
    b = ["-b", PROXY]
    run("kcat", ["kcat", "-b", PROXY, "-L"])
    run("weir", [weir, "topic", "create", "seeds", "-p", "2", *b])
    run("weir", [weir, "topic", "create", "seeds-small", "-p", "1", "-c", "segment.bytes=4096",
                 "-c", "index.interval.bytes=128", *b])
    run("weir", [weir, "topic", "create", "seeds-compact", "-p", "1", "-c", "cleanup.policy=compact",
                 "-c", "segment.bytes=2048", *b])
    run("weir", [weir, "topic", "list", *b])
    run("weir", [weir, "topic", "describe", "seeds-small", *b])
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        for topic in ["seeds", "seeds-small"]:
            run("kcat", ["kcat", "-b", PROXY, "-P", "-t", topic, "-z", codec, "-K", ":",
                         "-H", f"codec={codec}"], stdin=lines(12, f"kcat-{codec}"))
            run("weir", [weir, "produce", topic, "--compression", codec, "-k", ":",
                         "-H", "src=weir", *b], stdin=lines(12, f"weir-{codec}"))
    run("weir", [weir, "produce", "seeds-small", "--idempotent", "-k", ":", *b],
        stdin=lines(8, "weir-idem"))
    run("weir", [weir, "produce", "seeds-compact", "-k", ":", *b], stdin=lines(20, "c"))
    run("weir", [weir, "produce", "seeds-small", "--acks", "0", *b], stdin=lines(3, "acks0"))
    run("kcat", ["kcat", "-b", PROXY, "-C", "-t", "seeds", "-o", "beginning", "-e", "-c", "30"])
    run("kcat", ["kcat", "-b", PROXY, "-G", "grp-kcat", "-o", "beginning", "-c", "20", "seeds-small"],
        timeout=40)
    run("kcat", ["kcat", "-b", PROXY, "-Q", "-t", f"seeds-small:0:{int(time.time() * 1000) - 60000}"])
    run("weir", [weir, "consume", "seeds-small", "-g", "grp-weir", "--from", "earliest", "-n", "20",
                 "--timeout", "5", *b], timeout=40)
    run("weir", [weir, "consume", "seeds", "-p", "1", "--from", "earliest", "-n", "10",
                 "--timeout", "5", *b], timeout=40)
    run("weir", [weir, "group", "list", *b])
    run("weir", [weir, "group", "describe", "grp-weir", *b])
    run("weir", [weir, "group", "reset-offsets", "grp-weir", "-t", "seeds-small", "--to-earliest", *b])
    run("weir", [weir, "topic", "alter", "seeds", "-p", "3", "--set", "retention.ms=86400000", *b])
    run("weir", [weir, "topic", "create", "seeds-doomed", *b])
    run("weir", [weir, "topic", "delete", "seeds-doomed", *b])
    run("weir", [weir, "consume", "seeds-compact", "-g", "grp-doomed", "--from", "earliest", "-n", "5",
                 "--timeout", "5", *b], timeout=40)
    run("weir", [weir, "group", "delete", "grp-doomed", *b])


def scenario_confluent():
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (AdminClient, ConfigResource, NewPartitions, NewTopic,
                                       ConfigEntry, AlterConfigOpType, OffsetSpec)
    REC.tag = "confluent"
    print("[confluent] producer/consumer/admin", flush=True)
    p = Producer({"bootstrap.servers": PROXY, "enable.idempotence": True,
                  "compression.type": "zstd", "linger.ms": 5})
    for i in range(20):
        p.produce("seeds", key=f"ck{i}", value=f"confluent {i}" * (i % 4 + 1),
                  headers=[("h", b"v")])
    p.flush(10)
    p2 = Producer({"bootstrap.servers": PROXY, "compression.type": "lz4", "acks": 1})
    for i in range(5):
        p2.produce("seeds-small", value=f"plain {i}", partition=0)
    p2.flush(10)
    c = Consumer({"bootstrap.servers": PROXY, "group.id": "grp-ck", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["seeds"])
    got, deadline = 0, time.time() + 20
    while got < 20 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    if got:
        c.commit(asynchronous=False)
    c.close()
    a = AdminClient({"bootstrap.servers": PROXY})
    wait = lambda fs: [f.result(15) if hasattr(f, "result") else None for f in fs.values()]
    try:
        wait(a.create_topics([NewTopic("seeds-admin", 2, 1, config={"retention.ms": "3600000"})]))
        wait(a.create_partitions([NewPartitions("seeds-admin", 3)]))
        wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "seeds-admin")]))
        wait(a.incremental_alter_configs([ConfigResource(
            ConfigResource.Type.TOPIC, "seeds-admin",
            incremental_configs=[ConfigEntry("retention.ms", "7200000",
                                             incremental_operation=AlterConfigOpType.SET)])]))
        wait(a.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, "seeds-admin",
                                             set_config={"retention.ms": "3600000"})]))
        wait(a.list_offsets({TopicPartition("seeds", 0): OffsetSpec.earliest(),
                             TopicPartition("seeds", 1): OffsetSpec.latest(),
                             TopicPartition("seeds-small", 0): OffsetSpec.for_timestamp(
                                 int(time.time() * 1000) - 60000)}))
        wait(a.delete_records([TopicPartition("seeds-small", 0, 2)]))
        a.list_consumer_groups().result(15)
        wait(a.describe_consumer_groups(["grp-ck", "grp-weir"]))
        from confluent_kafka import ConsumerGroupTopicPartitions
        wait(a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("grp-ck")]))
        wait(a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            "grp-ck", [TopicPartition("seeds", 0, 1)])]))
        wait(a.delete_consumer_groups(["grp-ck"]))
        wait(a.delete_topics(["seeds-admin"]))
    except Exception as e:  # a refused call still captured its frames
        print(f"  admin: {e}", flush=True)


def scenario_kafka_python():
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic, ConfigResource, ConfigResourceType
    REC.tag = "kafka-python"
    print("[kafka-python] producer/consumer/admin", flush=True)
    try:
        p = KafkaProducer(bootstrap_servers=PROXY, compression_type="gzip", linger_ms=5)
        for i in range(10):
            p.send("seeds-small", key=f"kp{i}".encode(), value=f"kafka-python {i}".encode(),
                   headers=[("h", b"1")])
        p.flush(10)
        p.close()
        # (seeds-compact holds only uncompressed batches: this kafka-python has no zstd)
        c = KafkaConsumer("seeds-compact", bootstrap_servers=PROXY, group_id="grp-kp",
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          consumer_timeout_ms=8000)
        n = 0
        for _ in c:
            n += 1
            if n >= 10:
                break
        c.commit()
        c.close()
    except Exception as e:
        print(f"  kafka-python: {e}", flush=True)
    try:
        a = KafkaAdminClient(bootstrap_servers=PROXY)
        a.create_topics([NewTopic("seeds-kp", 1, 1, topic_configs={"cleanup.policy": "compact"})])
        a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "seeds-kp")])
        a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "seeds-kp",
                                        configs={"retention.ms": "1000000"})])
        # (method names differ between kafka-python releases)
        getattr(a, "list_consumer_groups", getattr(a, "list_groups", lambda: None))()
        a.describe_consumer_groups(["grp-kp"])
        a.list_consumer_group_offsets("grp-kp")
        a.delete_topics(["seeds-kp"])
        a.close()
    except Exception as e:
        print(f"  kafka-python: {e}", flush=True)


def sha(b):
    return hashlib.sha1(b).hexdigest()[:10]


def write_seeds(out, name, blobs, limit_each=4, max_size=64 << 10):
    d = out / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    per = collections.Counter()
    seen = set()
    for key, blob in blobs:
        if len(blob) > max_size or sha(blob) in seen or per[key] >= limit_each:
            continue
        seen.add(sha(blob))
        per[key] += 1
        (d / f"{key}-{sha(blob)}").write_bytes(blob)
    total = sum(f.stat().st_size for f in d.iterdir())
    print(f"{name}: {len(list(d.iterdir()))} seeds, {total} bytes")


def walk_batches(buf):
    pos = 0
    while len(buf) - pos >= 61:
        size = 12 + struct.unpack(">i", buf[pos + 8:pos + 12])[0]
        if size < 61 or pos + size > len(buf):
            break
        yield pos, buf[pos:pos + size]
        pos += size


def segment_seed(flags, base, log, ix=b"", tix=b"", delta=0, split=0, rp=0, ls=0):
    head = struct.pack(">BQIIqqHH", flags, base, delta, split, rp, ls, len(ix), len(tix))
    assert len(head) == 37
    return head + ix + tix + log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weir", default=str(REPO / "target/debug/weir"))
    ap.add_argument("--out", default=str(FUZZ / "seeds"))
    args = ap.parse_args()
    out = Path(args.out)
    data = Path(tempfile.mkdtemp(prefix="fz-seed-"))
    node = subprocess.Popen([args.weir, "broker", "--data-dir", str(data),
                             "--listen", f"127.0.0.1:{NODE_PORT}",
                             "--admin-listen", f"127.0.0.1:{ADMIN_PORT}",
                             "--advertise", PROXY, "--group-initial-rebalance-delay-ms", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        node.stdout.readline()  # "weir listening ..."
        start_proxy()
        scenario_cli(args.weir)
        scenario_confluent()
        scenario_kafka_python()
        time.sleep(1)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)

    # request_frame: every distinct request, a few per (API, version, client).
    reqs = [(f"{API_NAMES.get(api, api)}-v{ver}-{tag}", body) for tag, api, ver, body in REC.requests]
    write_seeds(out, "request_frame", reqs, limit_each=2)

    # client_response: responses to (API, version) pairs the weir client speaks.
    resp = []
    for tag, api, ver, body in REC.responses:
        for i, (key, cmax, cmin) in enumerate(CLIENT_APIS):
            if key == api and cmin <= ver <= cmax:
                resp.append((f"{API_NAMES[api]}-v{ver}", bytes([i, ver - cmin]) + body[4:]))
    write_seeds(out, "client_response", resp, limit_each=3)

    # batch_append: stored batches (client batches, offsets stamped) from every log.
    batches, segs = [], []
    for seg in sorted((data / "logs").glob("*/*.log")):
        buf = seg.read_bytes()
        topic = seg.parent.name
        for _, b in walk_batches(buf):
            attrs = struct.unpack(">h", b[21:23])[0]
            pid = struct.unpack(">q", b[43:51])[0]
            kind = f"codec{attrs & 7}-{'idem' if pid >= 0 else 'plain'}-{'ctl' if attrs & 0x20 else 'data'}"
            batches.append((f"{kind}-{topic}", b))
        if 0 < len(buf) <= 8192 and topic.startswith("seeds-small"):
            segs.append(seg)
    ba = []
    for i, (key, b) in enumerate(batches):
        flags = [0, 1, 2, 4, 0x10][i % 5]
        ba.append((key, bytes([flags]) + b))
    # Two batches in one produce.
    if len(batches) >= 2:
        ba.append(("two-batches", bytes([0]) + batches[0][1] + batches[1][1]))
    write_seeds(out, "batch_append", ba, limit_each=2)

    # segment_recovery: real segments (log + indexes) in several recovery situations.
    sr = []
    for seg in segs[:6]:
        base = int(seg.name[:20])
        log = seg.read_bytes()
        ix = seg.with_suffix(".index").read_bytes() if seg.with_suffix(".index").exists() else b""
        tix = seg.with_suffix(".timeindex").read_bytes() if seg.with_suffix(".timeindex").exists() else b""
        ix, tix = ix.rstrip(b"\0"), tix.rstrip(b"\0")
        ix, tix = ix + b"\0" * (-len(ix) % 8), tix + b"\0" * (-len(tix) % 12)
        positions = [p for p, _ in walk_batches(log)]
        name = f"{seg.parent.name}-{base}"
        sr.append((f"clean-{name}", segment_seed(0x08 | 0x02 | 0x04, base, log, ix, tix)))
        sr.append((f"rebuild-{name}", segment_seed(0x00, base, log)))
        sr.append((f"torn-{name}", segment_seed(0x80, base, log[: max(1, len(log) - 17)])))
        if len(positions) >= 2:
            mid = positions[len(positions) // 2]
            first = struct.unpack(">q", log[mid:mid + 8])[0] - base
            sr.append((f"split-{name}", segment_seed(0x40 | 0x10 | 0x20, base, log, delta=first,
                                                      split=mid, rp=base + first, ls=base + 1)))
    write_seeds(out, "segment_recovery", sr, limit_each=1)
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
