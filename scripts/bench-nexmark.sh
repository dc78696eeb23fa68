#!/usr/bin/env bash
# Events per CPU-second of the broker process for Nexmark queries 5, 7, 11
# and 12 (as tests/tests/nexmark.rs runs them; q5 and q7 their aggregation
# stage only; q5k is Q5's grouping by the record key, the auction; q5f and
# q7f are Q5 and Q7 in full, as window Top-N jobs)
# over N bids already in a 3-partition topic. Starts a release
# `weir broker` (data under $OUT, removed at exit), produces N bids from the
# `nexmark` crate (target/release/nexmark-bids, keyed by auction), then for
# each query and round creates a job --from earliest and measures the
# broker's CPU time (utime + stime from /proc) and wall time until the job
# has read every bid and its aggregate tasks have read every routed row
# (the status's caught_up); the job is dropped after. Prints each run, then the
# median of the rounds per query. The approach is scripts/bench-stream.sh's.
#
#   cargo build --release -p weir-broker -p weir-tests --bin weir --bin nexmark-bids
#   scripts/bench-nexmark.sh                  # N=1000000 ROUNDS=3
#   N=200000 ROUNDS=3 scripts/bench-nexmark.sh
#   QUERIES="q5f q7f" N=300000 scripts/bench-nexmark.sh   # some queries only
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
W="${WEIR:-$TARGET/release/weir}"
GEN="${GEN:-$TARGET/release/nexmark-bids}"
N="${N:-1000000}"
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-$TARGET/bench-results/nexmark-$(date -u +%Y%m%dT%H%M%SZ)}"
PORT="${PORT:-39120}"
mkdir -p "$OUT"
BOOT="127.0.0.1:$PORT"
ADMIN="127.0.0.1:$((PORT + 1))"
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$OUT/data" "$OUT/bids.tsv"
}
trap cleanup EXIT
"$GEN" "$N" >"$OUT/bids.tsv"
"$W" broker --data-dir "$OUT/data" --listen "$BOOT" --admin-listen "$ADMIN" >"$OUT/broker.err" 2>&1 &
PID=$!
for _ in $(seq 1 150); do
    "$W" topic list --bootstrap "$BOOT" >/dev/null 2>&1 && break
    sleep 0.2 # polling for the node to listen, bounded by the loop
done
"$W" topic create bid --partitions 3 --bootstrap "$BOOT" >/dev/null
# Keyed by auction (tab-separated); idempotent, so a retried batch cannot
# land after a later one.
"$W" produce bid -k "$(printf '\t')" --idempotent --bootstrap "$BOOT" <"$OUT/bids.tsv" >/dev/null
TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$PID/stat"; }
status() { # name, python expression over the job's status `s`
    "$W" job describe "$1" --admin "$ADMIN" | python3 -c "import json,sys; s=json.load(sys.stdin)['status']; print($2)"
}
run() { # query, round, sql (with OUT_TOPIC for the output topic)
    local q=$1 round=$2 name="$1_r$2" c0 c1 t0 t1 n out
    local sql=${3//OUT_TOPIC/"out_$name"}
    c0=$(cpu)
    t0=$(date +%s.%N)
    "$W" job create "$name" --sql "$sql" --grace 1s --admin "$ADMIN" >/dev/null
    while :; do
        n=$(status "$name" "s['records_in'] if s['caught_up'] else -1")
        [ "$n" -ge "$N" ] && break
        sleep 0.2 # polling the job's progress, until its route and aggregate tasks have read everything
    done
    c1=$(cpu)
    t1=$(date +%s.%N)
    out=$(status "$name" "s['records_out'], s['late']")
    "$W" job drop "$name" --admin "$ADMIN" >/dev/null
    python3 -c "import sys; n,c0,c1,t0,t1=int(sys.argv[1]),*map(float,sys.argv[2:6]); print('weir  %-4s round %s %9d bids  %6.2f CPU-s  %6.2f s wall  %9.0f events/CPU-s  %9.0f events/s  out,late %s' % (sys.argv[6], sys.argv[7], n, c1-c0, t1-t0, n/(c1-c0), n/(t1-t0), sys.argv[8]))" \
        "$N" "$c0" "$c1" "$t0" "$t1" "$q" "$round" "$out"
}
HOP="INTERVAL '2' SECOND, INTERVAL '10' SECOND"
TEN="INTERVAL '10' SECOND"
PROC="PROCTIME(), INTERVAL '10' SECOND"
declare -A SQL=(
    [q5]="INSERT INTO OUT_TOPIC SELECT auction, COUNT(*) AS num, HOP_START(dateTime, $HOP) AS starttime FROM bid GROUP BY auction, HOP(dateTime, $HOP)"
    [q5k]="INSERT INTO OUT_TOPIC SELECT _key AS auction, COUNT(*) AS num, HOP_START(dateTime, $HOP) AS starttime FROM bid GROUP BY _key, HOP(dateTime, $HOP)"
    [q5f]="INSERT INTO OUT_TOPIC SELECT auction, num, window_start AS starttime FROM (SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rownum FROM (SELECT auction, COUNT(*) AS num, window_start, window_end FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), $HOP)) GROUP BY auction, window_start, window_end)) WHERE rownum <= 1"
    [q7f]="INSERT INTO OUT_TOPIC SELECT auction, price, bidder, dateTime, window_start AS starttime FROM (SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), $TEN))) WHERE rownum <= 1"
    [q7]="INSERT INTO OUT_TOPIC SELECT MAX(price) AS maxprice, TUMBLE_START(dateTime, $TEN) AS starttime FROM bid GROUP BY TUMBLE(dateTime, $TEN)"
    [q11]="INSERT INTO OUT_TOPIC SELECT B.bidder, COUNT(*) AS bid_count, SESSION_START(B.dateTime, $TEN) AS starttime, SESSION_END(B.dateTime, $TEN) AS endtime FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, $TEN)"
    [q12]="INSERT INTO OUT_TOPIC SELECT B.bidder, COUNT(*) AS bid_count, TUMBLE_START($PROC) AS starttime, TUMBLE_END($PROC) AS endtime FROM bid B GROUP BY B.bidder, TUMBLE($PROC)"
)
{
    for round in $(seq 1 "$ROUNDS"); do
        for q in ${QUERIES:-q5 q5k q5f q7 q7f q11 q12}; do
            run "$q" "$round" "${SQL[$q]}"
        done
    done
} | tee "$OUT/runs.txt"
echo "median of $ROUNDS rounds, $N bids:" | tee "$OUT/summary.txt"
python3 - "$OUT/runs.txt" <<'PY' | tee -a "$OUT/summary.txt"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[1], []).append((float(f[11]), float(f[13])))
for q, r in runs.items():
    print("weir  %-4s %9.0f events/CPU-s  %9.0f events/s" % (
        q, statistics.median(x for x, _ in r), statistics.median(y for _, y in r)))
PY
echo "results: $OUT"
