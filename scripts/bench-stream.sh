#!/usr/bin/env bash
# Events per CPU-second of the broker process for windowed SQL jobs over
# JSON input already in a topic: the seed's TUMBLE query, a HOP and a
# SESSION variant. Starts a release `weir broker` (data under $OUT, removed
# at exit), produces N events (scripts/stream_events.py), then for each
# query creates a job --from earliest and measures the broker's CPU time
# (utime + stime from /proc) and wall time until the job has read every
# event and its aggregate tasks every routed row (the status's caught_up).
# Each query runs twice: grouping by the customerId field and, over a copy
# of the events keyed by customer, grouping by the record key (`_key`).
# With FLINK=1 (and target/flinkenv holding apache-flink, see
# scripts/flink_stream.py) the same events run through Flink SQL in the
# same script, for the comparison.
#
# PARTITIONS (default 1) sets the input topics' partition count. The node
# is a cluster of one, so a query grouping by the customerId field runs as
# one task over every partition, without a repartition topic (on three
# nodes it would go through one); the keyed queries run a task per
# partition.
#
#   scripts/bench-stream.sh                   # N=1000000
#   N=300000 FLINK=1 scripts/bench-stream.sh
#   PARTITIONS=3 scripts/bench-stream.sh
#   SERVE_RATE=5000 scripts/bench-stream.sh  # jobs while the broker serves other traffic
#
# With SERVE_RATE=R the broker also serves, through every job, a producer
# of R records per second (512 bytes, acks=1, `weir bench produce --rate`)
# to a topic `serve` and a consumer reading it. The script first measures
# what that traffic alone costs the broker (CPU-seconds per second, over
# 5 s) and prints, beside each job's events per CPU-second of the whole
# broker, the figure with the traffic's share over the job's wall time
# taken out ("own").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${WEIR:-$ROOT/target/release/weir}"
N="${N:-1000000}"
PARTITIONS="${PARTITIONS:-1}"
OUT="${OUT:-$ROOT/target/bench-results/stream-$(date -u +%Y%m%dT%H%M%SZ)}"
PORT="${PORT:-39110}"
mkdir -p "$OUT"
BOOT="127.0.0.1:$PORT"
ADMIN="127.0.0.1:$((PORT + 1))"
SERVE_PIDS=()
cleanup() {
    for p in "${SERVE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$OUT/data" "$OUT/events.jsonl" "$OUT/keyed.txt"
}
trap cleanup EXIT
python3 "$ROOT/scripts/stream_events.py" "$N" >"$OUT/events.jsonl"
"$W" broker --data-dir "$OUT/data" --listen "$BOOT" --admin-listen "$ADMIN" >"$OUT/broker.err" 2>&1 &
PID=$!
for _ in $(seq 1 150); do
    "$W" topic list --bootstrap "$BOOT" >/dev/null 2>&1 && break
    sleep 0.2 # polling for the node to listen, bounded by the loop
done
"$W" topic create tx --partitions "$PARTITIONS" --bootstrap "$BOOT" >/dev/null
# Idempotent: without it, a retried batch may land after a later one.
"$W" produce tx --idempotent --bootstrap "$BOOT" <"$OUT/events.jsonl" >/dev/null
# The same events keyed by customer (`customerId|{json}` lines).
python3 -c 'import json, sys
for line in sys.stdin:
    sys.stdout.write("%d|%s" % (json.loads(line)["customerId"], line))' <"$OUT/events.jsonl" >"$OUT/keyed.txt"
"$W" topic create txk --partitions "$PARTITIONS" --bootstrap "$BOOT" >/dev/null
"$W" produce txk --idempotent --key-separator '|' --bootstrap "$BOOT" <"$OUT/keyed.txt" >/dev/null
TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$PID/stat"; }
LOAD=0
if [ -n "${SERVE_RATE:-}" ]; then
    "$W" topic create serve --bootstrap "$BOOT" >/dev/null
    "$W" bench produce -t serve --rate "$SERVE_RATE" -s 512 -d 100000 --acks 1 --bootstrap "$BOOT" >"$OUT/serve-produce.txt" 2>&1 &
    SERVE_PIDS+=($!)
    "$W" consume serve --from latest --bootstrap "$BOOT" >/dev/null 2>"$OUT/serve-consume.err" &
    SERVE_PIDS+=($!)
    sleep 3 # the traffic settles before its cost is measured
    l0=$(cpu)
    sleep 5 # a fixed window over which the traffic's cost is measured
    l1=$(cpu)
    LOAD=$(python3 -c "import sys; print('%.4f' % ((float(sys.argv[2]) - float(sys.argv[1])) / 5))" "$l0" "$l1")
    echo "serving $SERVE_RATE records/s (512 B, acks=1) produced and consumed: $LOAD CPU-s per s of the broker" | tee "$OUT/serve.txt"
fi
run() { # name, sql
    local name=$1 sql=$2 c0 c1 t0 t1 n
    c0=$(cpu)
    t0=$(date +%s.%N)
    "$W" job create "$name" --sql "$sql" --grace 5s --admin "$ADMIN" >/dev/null
    while :; do
        n=$("$W" job describe "$name" --admin "$ADMIN" | python3 -c "import json,sys; s=json.load(sys.stdin)['status']; print(s['records_in'] if s['caught_up'] else -1)")
        [ "$n" -ge "$N" ] && break
        sleep 0.2 # polling the job's progress, until its route and aggregate tasks have read everything
    done
    c1=$(cpu)
    t1=$(date +%s.%N)
    out=$("$W" job describe "$name" --admin "$ADMIN" | python3 -c "import json,sys; s=json.load(sys.stdin)['status']; print(s['records_out'], s['late'])")
    "$W" job drop "$name" --admin "$ADMIN" >/dev/null
    python3 -c "import sys; n,c0,c1,t0,t1,load=int(sys.argv[1]),*map(float,sys.argv[2:6]),float(sys.argv[8]); own=(c1-c0)-load*(t1-t0); print('weir  %-8s %9d events  %6.2f CPU-s  %6.2f s wall  %9.0f events/CPU-s  %9.0f events/s  out,late %s%s' % (sys.argv[6], n, c1-c0, t1-t0, n/(c1-c0), n/(t1-t0), sys.argv[7], ('  own %9.0f events/CPU-s' % (n/own)) if load > 0 and own > 0 else ''))" \
        "$N" "$c0" "$c1" "$t0" "$t1" "$name" "$out" "$LOAD"
}
{
    run tumble "INSERT INTO out_tumble SELECT customerId, TUMBLE_START(ts, INTERVAL '30' SECOND) AS window_start, SUM(transactionSum) AS total, COUNT(*) AS n FROM tx GROUP BY customerId, TUMBLE(ts, INTERVAL '30' SECOND)"
    run hop "INSERT INTO out_hop SELECT customerId, HOP_START(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS window_start, COUNT(*) AS n FROM tx GROUP BY customerId, HOP(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)"
    run session "INSERT INTO out_session SELECT customerId, SESSION_START(ts, INTERVAL '10' SECOND) AS window_start, COUNT(*) AS n FROM tx GROUP BY customerId, SESSION(ts, INTERVAL '10' SECOND)"
    run tumble_k "INSERT INTO out_tumble_k SELECT _key AS customerId, TUMBLE_START(ts, INTERVAL '30' SECOND) AS window_start, SUM(transactionSum) AS total, COUNT(*) AS n FROM txk GROUP BY _key, TUMBLE(ts, INTERVAL '30' SECOND)"
    run hop_k "INSERT INTO out_hop_k SELECT _key AS customerId, HOP_START(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS window_start, COUNT(*) AS n FROM txk GROUP BY _key, HOP(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)"
    run session_k "INSERT INTO out_session_k SELECT _key AS customerId, SESSION_START(ts, INTERVAL '10' SECOND) AS window_start, COUNT(*) AS n FROM txk GROUP BY _key, SESSION(ts, INTERVAL '10' SECOND)"
} | tee "$OUT/summary.txt"
if [ "${FLINK:-0}" = 1 ]; then
    "$ROOT/target/flinkenv/bin/python" "$ROOT/scripts/flink_stream.py" "$OUT/events.jsonl" "$N" | tee -a "$OUT/summary.txt"
fi
echo "results: $OUT"
