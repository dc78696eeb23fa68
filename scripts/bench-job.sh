#!/usr/bin/env bash
# A/B of one stream job across `weir` binaries: events per CPU-second of the
# broker process, runs interleaved (A B A B ...) so machine noise hits each
# binary alike. Each run starts a fresh release broker (data under $OUT,
# removed after the run), produces N events keyed by customer
# (scripts/stream_events.py), creates the job --from earliest and measures
# the broker's CPU time (utime + stime from /proc) until the job has read
# every event (the status's caught_up), as scripts/bench-stream.sh does.
#
#   BINS="/tmp/weir-old target/release/weir" QUERY=tumble scripts/bench-job.sh
#   ROUNDS=5 N=1000000 QUERY=hop_k BINS="..." scripts/bench-job.sh
#   PARTITIONS=3 QUERY=tumble BINS="..." scripts/bench-job.sh   # input of 3 partitions
#   COPY=1 ROUNDS=8 QUERY=hop_k BINS="..." scripts/bench-job.sh  # events produced once
#
# With COPY=1 the events are produced once, by the first binary, into a
# data directory that each run starts from a fresh copy of (a run then
# takes seconds, so there can be many; the data directory's format is the
# same for the binaries compared).
#
# QUERY: tumble, hop, session (group by the customerId field: through the
# repartition topic) or tumble_k, hop_k, session_k (group by the record
# key); the statements are bench-stream.sh's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${BINS:?set BINS to the weir binaries to compare}"
QUERY="${QUERY:-tumble_k}"
ROUNDS="${ROUNDS:-3}"
N="${N:-500000}"
PARTITIONS="${PARTITIONS:-1}"
PORT="${PORT:-39610}"
OUT="${OUT:-$ROOT/target/bench-results/job-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
case "$QUERY" in
tumble | tumble_k) W="TUMBLE(ts, INTERVAL '30' SECOND)" S="TUMBLE_START(ts, INTERVAL '30' SECOND) AS window_start, SUM(transactionSum) AS total, COUNT(*) AS n" ;;
hop | hop_k) W="HOP(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)" S="HOP_START(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS window_start, COUNT(*) AS n" ;;
session | session_k) W="SESSION(ts, INTERVAL '10' SECOND)" S="SESSION_START(ts, INTERVAL '10' SECOND) AS window_start, COUNT(*) AS n" ;;
*) echo "unknown QUERY $QUERY" >&2; exit 2 ;;
esac
case "$QUERY" in
*_k) SQL="INSERT INTO out_$QUERY SELECT _key AS customerId, $S FROM txk GROUP BY _key, $W" ;;
*) SQL="INSERT INTO out_$QUERY SELECT customerId, $S FROM txk GROUP BY customerId, $W" ;;
esac
python3 "$ROOT/scripts/stream_events.py" "$N" | python3 -c 'import json, sys
for line in sys.stdin:
    sys.stdout.write("%d|%s" % (json.loads(line)["customerId"], line))' >"$OUT/keyed.txt"
TICK=$(getconf CLK_TCK)
PID=
cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$OUT/data" "$OUT/seed" "$OUT/keyed.txt"
}
trap cleanup EXIT
start() { # binary, data dir, log: starts a node, waits for it to listen
    "$1" broker --data-dir "$2" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$((PORT + 1))" >"$3" 2>&1 &
    PID=$!
    for _ in $(seq 1 150); do
        "$1" topic list --bootstrap "127.0.0.1:$PORT" >/dev/null 2>&1 && break
        sleep 0.2 # polling for the node to listen, bounded by the loop
    done
}
produce() { # binary: the input topic and its events
    "$1" topic create txk --partitions "$PARTITIONS" --bootstrap "127.0.0.1:$PORT" >/dev/null
    "$1" produce txk --idempotent --key-separator '|' --bootstrap "127.0.0.1:$PORT" <"$OUT/keyed.txt" >/dev/null
}
if [ "${COPY:-0}" = 1 ]; then
    rm -rf "$OUT/seed"
    start "${BINS%% *}" "$OUT/seed" "$OUT/seed.err"
    produce "${BINS%% *}"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
fi
one() { # binary, run number
    local w=$1 admin="127.0.0.1:$((PORT + 1))" c0 c1 n
    rm -rf "$OUT/data"
    if [ "${COPY:-0}" = 1 ]; then
        cp -r "$OUT/seed" "$OUT/data"
        start "$w" "$OUT/data" "$OUT/broker-$2.err"
    else
        start "$w" "$OUT/data" "$OUT/broker-$2.err"
        produce "$w"
    fi
    c0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
    "$w" job create "$QUERY" --sql "$SQL" --grace 5s --admin "$admin" >/dev/null
    while :; do
        n=$("$w" job describe "$QUERY" --admin "$admin" | python3 -c "import json,sys; s=json.load(sys.stdin)['status']; print(s['records_in'] if s['caught_up'] else -1)")
        [ "$n" -ge "$N" ] && break
        sleep 0.2 # polling the job's progress until it has read everything
    done
    c1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    python3 -c "import sys; print('%s %s %.0f events/CPU-s' % (sys.argv[1], sys.argv[2], int(sys.argv[3]) / ((int(sys.argv[5]) - int(sys.argv[4])) / int(sys.argv[6]))))" \
        "$w" "$QUERY" "$N" "$c0" "$c1" "$TICK"
}
run=0
for _ in $(seq 1 "$ROUNDS"); do
    for b in $BINS; do
        run=$((run + 1))
        one "$b" "$run"
    done
done | tee "$OUT/summary.txt"
echo "results: $OUT"
