#!/usr/bin/env bash
# acks=all latency of a local 3-node cluster at half of its peak: starts three
# `weir broker` processes (data under $OUT), creates an RF-3 topic of one
# partition, measures the unthrottled acks=all peak, then produces paced at half
# of it for PACED_SECS, with the client's default linger (5 ms) and with linger 0,
# and at FLOOR_RATE records/s with linger 0 (one record per request: the floor
# of the acks=all path, where no queueing plays a part).
# Prints the latency percentiles (send to ack) of each run; the nodes' data
# directories are removed at exit (their logs and the JSON results stay). Compare with fio's
# fdatasync p99 from scripts/bench-broker.sh or scripts/bench-cluster.sh.
#
#   scripts/bench-cluster-paced.sh            # uses target/release/weir
#   PACED_SECS=30 scripts/bench-cluster-paced.sh
#   FLOOR_ONLY=1 WEIR=/tmp/weir-a scripts/bench-cluster-paced.sh   # only the floor run
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${WEIR:-$ROOT/target/release/weir}"
OUT="${OUT:-$ROOT/target/bench-results/cluster-paced-$(date -u +%Y%m%dT%H%M%SZ)}"
PORT="${PORT:-39010}"
PACED_SECS="${PACED_SECS:-10}"
PEAK_COUNT="${PEAK_COUNT:-300000}"
FLOOR_RATE="${FLOOR_RATE:-1000}"
FLOOR_ONLY="${FLOOR_ONLY:-0}"
mkdir -p "$OUT"
PEERS="1@127.0.0.1:$((PORT + 21)),2@127.0.0.1:$((PORT + 22)),3@127.0.0.1:$((PORT + 23))"
BOOT="127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2)),127.0.0.1:$((PORT + 3))"
PIDS=()
cleanup() { # stop the nodes and drop their data (gigabytes); logs and JSON stay
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
    rm -rf "$OUT"/node-1 "$OUT"/node-2 "$OUT"/node-3
}
trap cleanup EXIT
for i in 1 2 3; do
    "$W" broker --node-id "$i" --listen "127.0.0.1:$((PORT + i))" \
        --admin-listen "127.0.0.1:$((PORT + 10 + i))" --raft-listen "127.0.0.1:$((PORT + 20 + i))" \
        --peers "$PEERS" --data-dir "$OUT/node-$i" >"$OUT/node-$i.err" 2>&1 &
    PIDS+=($!)
done
ok=0
for _ in $(seq 1 150); do
    if "$W" topic list --bootstrap "$BOOT" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2 # polling for the cluster to listen, bounded by the loop
done
((ok)) || { echo "the cluster did not start" >&2; exit 1; }
"$W" topic create paced --partitions 1 --replication-factor 3 --bootstrap "$BOOT"
RUNS="peak paced-linger5 paced-linger0 floor"
if [ "$FLOOR_ONLY" = 1 ]; then
    RUNS="floor"
else
    "$W" bench produce -t paced -n "$PEAK_COUNT" -s 1024 --acks all --bootstrap "$BOOT" --json >"$OUT/peak.json"
    RATE=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['mb_per_sec'] * 1048576 / 1024 / 2))" "$OUT/peak.json")
    "$W" bench produce -t paced -d "$PACED_SECS" -s 1024 --acks all --rate "$RATE" --bootstrap "$BOOT" --json >"$OUT/paced-linger5.json"
    "$W" bench produce -t paced -d "$PACED_SECS" -s 1024 --acks all --rate "$RATE" --linger-ms 0 --bootstrap "$BOOT" --json >"$OUT/paced-linger0.json"
fi
"$W" bench produce -t paced -d "$PACED_SECS" -s 1024 --acks all --rate "$FLOOR_RATE" --linger-ms 0 --bootstrap "$BOOT" --json >"$OUT/floor.json"
for f in $RUNS; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['latency_ms']; print('%-14s %7.1f MB/s  p50 %s  p99 %s  p99.9 %s  max %s ms  errors %s' % (sys.argv[2], d['mb_per_sec'], l['p50'], l['p99'], l['p99.9'], l['max'], d['errors']))" "$OUT/$f.json" "$f"
done | tee "$OUT/summary.txt"
echo "results: $OUT"
