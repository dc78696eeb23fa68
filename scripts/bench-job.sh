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
    rm -rf "$OUT/data" "$OUT/keyed.txt"
}
trap cleanup EXIT
one() { # binary, run number
    local w=$1 boot="127.0.0.1:$PORT" admin="127.0.0.1:$((PORT + 1))" c0 c1 n
    rm -rf "$OUT/data"
    "$w" broker --data-dir "$OUT/data" --listen "$boot" --admin-listen "$admin" >"$OUT/broker-$2.err" 2>&1 &
    PID=$!
    for _ in $(seq 1 150); do
        "$w" topic list --bootstrap "$boot" >/dev/null 2>&1 && break
        sleep 0.2 # polling for the node to listen, bounded by the loop
    done
    "$w" topic create txk --partitions "$PARTITIONS" --bootstrap "$boot" >/dev/null
    "$w" produce txk --idempotent --key-separator '|' --bootstrap "$boot" <"$OUT/keyed.txt" >/dev/null
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
