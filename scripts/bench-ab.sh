#!/usr/bin/env bash
# A/B produce throughput of two `weir` broker binaries in one session, runs
# interleaved (A B A B ...) so machine noise hits both alike. The client is
# always binary B's `weir bench produce`, so only the broker differs.
#
#   A=/path/to/old/weir B=target/release/weir scripts/bench-ab.sh
#   ROUNDS=5 COUNT=1000000 COMPRESSION=lz4 A=... B=... scripts/bench-ab.sh
#
# Environment:
#   A, B         broker binaries (required)
#   ROUNDS       runs of each (default 4)
#   COUNT        messages per run (default 500000, 1 KiB each)
#   ACKS         1 or all (default 1)
#   COMPRESSION  none, gzip, snappy, lz4, zstd (default none)
#   BENCH_ROOT   where data directories go (default target/; must be disk-backed)
#   PORT         Kafka port (default 29192; PORT+1 for admin)
# Prints one line per run and the median MB/s of each side with the ratio B/A.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${A:?set A to the baseline weir binary}"
: "${B:?set B to the candidate weir binary}"
ROUNDS="${ROUNDS:-4}"
COUNT="${COUNT:-500000}"
ACKS="${ACKS:-1}"
COMPRESSION="${COMPRESSION:-none}"
BENCH_ROOT="${BENCH_ROOT:-$ROOT/target}"
PORT="${PORT:-29192}"
ADMIN=$((PORT + 1))
command -v jq >/dev/null || { echo "jq missing" >&2; exit 1; }

run_one() { # $1 = binary; prints MB/s
    local bin=$1 dir
    dir="$(mktemp -d "$BENCH_ROOT/bench-ab.XXXXXX")"
    "$bin" broker --data-dir "$dir" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" \
        >"$dir.out" 2>"$dir.err" &
    local pid=$!
    for _ in $(seq 1 100); do
        grep -q "weir listening" "$dir.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir.err" >&2; exit 1; }
        sleep 0.1
    done
    "$B" bench produce -b "127.0.0.1:$PORT" -n "$COUNT" --acks "$ACKS" \
        --compression "$COMPRESSION" --json >"$dir.json"
    kill -INT "$pid"; wait "$pid" || true
    jq -r '.mb_per_sec // .throughput_mb_s // .mbps' "$dir.json"
    rm -rf "$dir" "$dir.out" "$dir.err" "$dir.json"
    sync
}

a_runs=(); b_runs=()
for r in $(seq 1 "$ROUNDS"); do
    a=$(run_one "$A"); b=$(run_one "$B")
    echo "round $r: A $a MB/s, B $b MB/s"
    a_runs+=("$a"); b_runs+=("$b")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
ma=$(median "${a_runs[@]}"); mb=$(median "${b_runs[@]}")
echo "acks=$ACKS compression=$COMPRESSION count=$COUNT rounds=$ROUNDS"
echo "A median $ma MB/s (${a_runs[*]})"
echo "B median $mb MB/s (${b_runs[*]})"
awk -v a="$ma" -v b="$mb" 'BEGIN { printf "B/A = %.3f\n", b / a }'
