#!/usr/bin/env bash
# Time and CPU to create a topic of PARTITIONS partitions until every one has
# a leader: on a fresh local cluster of NODES nodes (`weir cluster up`,
# replication factor NODES) or, with NODES=1, one node. CPU is utime + stime
# of the broker processes (/proc) over the same span. Data under a temporary
# directory, removed at exit.
#
#   cargo build --release -p weir-broker --bin weir
#   scripts/bench-create.sh                       # NODES=3 PARTITIONS=1000
#   NODES=1 scripts/bench-create.sh
#   WEIR=/path/to/other/weir scripts/bench-create.sh   # an A/B
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${WEIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release/weir}"
NODES="${NODES:-3}"
P="${PARTITIONS:-1000}"
PORT="${PORT:-39600}"
D=$(mktemp -d /tmp/weir-bench-create.XXXX)
B="127.0.0.1:$PORT"
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill -INT "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$D"
}
trap cleanup EXIT
if [ "$NODES" = 1 ]; then
    "$W" broker --data-dir "$D/node-1" --listen "$B" --admin-listen "127.0.0.1:$((PORT + 50))" >"$D/up.log" 2>&1 &
else
    "$W" cluster up --nodes "$NODES" --data-dir "$D" --base-port "$PORT" --admin-base-port "$((PORT + 50))" >"$D/up.log" 2>&1 &
fi
PID=$!
for _ in $(seq 1 150); do
    "$W" topic list --bootstrap "$B" >/dev/null 2>&1 && break
    sleep 0.2 # polling for the cluster to answer, bounded by the loop
done
cpu() {
    for p in $(pgrep -f "data-dir $D/node"); do awk '{print $14 + $15}' "/proc/$p/stat"; done |
        awk -v t="$(getconf CLK_TCK)" '{s += $1} END {printf "%.2f", s / t}'
}
c0=$(cpu)
t0=$(date +%s.%N)
"$W" topic create big --partitions "$P" --replication-factor "$NODES" --bootstrap "$B" >/dev/null
t1=$(date +%s.%N)
while :; do
    n=$("$W" topic describe big --bootstrap "$B" 2>/dev/null | grep -c "Leader: [0-9]" || true)
    [ "$n" -ge "$P" ] && break
    sleep 0.3 # polling until every partition has a leader
done
t2=$(date +%s.%N)
c1=$(cpu)
python3 -c "import sys; a=list(map(float,sys.argv[1:6])); print('%s nodes=%s partitions=%s: answered %.2f s, all led %.2f s, nodes CPU %.1f s' % (sys.argv[6], sys.argv[7], sys.argv[8], a[1]-a[0], a[2]-a[0], a[4]-a[3]))" \
    "$t0" "$t1" "$t2" "$c0" "$c1" "$W" "$NODES" "$P"
