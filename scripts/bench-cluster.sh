#!/usr/bin/env bash
# Replication cost and failover of a local 3-node Weir cluster, in one run:
#
#  1. produce acks=all throughput and latency, a single node against a 3-node
#     cluster with a replication-factor-3 topic (1 partition, fresh data
#     directories every round), rounds interleaved (single, cluster, single, ...)
#     so the machine's noise falls on both; bootstrap with all three nodes;
#  2. failover: kill -9 the partition's leader, time from the kill until one
#     acks=all `weir produce` to the two survivors succeeds (and, polling their
#     /v1/cluster meanwhile, until one reports itself leader); restart the node
#     and wait until it has caught up before the next kill;
#  3. wall time of `weir topic create big -p 1000 -r 3`, and the idle CPU (and
#     RSS) of each node hosting those partitions, from /proc/PID/stat; then
#     the same with node 3 killed (the survivors' groups keep a follower they
#     cannot reach).
# Then, if fio is installed, the disk's write+fdatasync limits for comparison.
#
#   scripts/bench-cluster.sh                 # uses target/release/weir
#   ROUNDS=5 COUNT=500000 FAILOVERS=20 scripts/bench-cluster.sh
#   OUT=/tmp/bench-cluster scripts/bench-cluster.sh
#
# Environment:
#   WEIR        weir binary (default target/release/weir)
#   ROUNDS      interleaved rounds of single node / cluster (default 3)
#   COUNT       messages per produce run (default 200000)
#   SIZE        message size in bytes (default 1024)
#   FAILOVERS   leader kills (default 10)
#   BIG         partitions of the big topic (default 1000; 0 skips step 3)
#   IDLE_SECS   window of the idle-CPU measurement (default 20)
#   FIO         1 to run fio if it is installed, 0 to skip (default 1)
#   BENCH_ROOT  where the data directories go (default target/; must not be tmpfs)
#   OUT         results directory: bench JSON, node logs, summary.txt
#               (default target/bench-results/cluster-<UTC stamp>)
#   PORT        base port (default 29292): single node PORT (Kafka), PORT+1
#               (admin); cluster node i: PORT+10+i (Kafka), PORT+20+i (admin),
#               PORT+30+i (Raft)
# Prints one line per run and a summary: medians (runs in brackets) and
# cluster/single ratios; failover median, min and max in ms.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WEIR="${WEIR:-$ROOT/target/release/weir}"
ROUNDS="${ROUNDS:-3}"
COUNT="${COUNT:-200000}"
SIZE="${SIZE:-1024}"
FAILOVERS="${FAILOVERS:-10}"
BIG="${BIG:-1000}"
IDLE_SECS="${IDLE_SECS:-20}"
FIO="${FIO:-1}"
BENCH_ROOT="${BENCH_ROOT:-$ROOT/target}"
PORT="${PORT:-29292}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$ROOT/target/bench-results/cluster-$STAMP}"
HZ="$(getconf CLK_TCK)"

[[ -x "$WEIR" ]] || { echo "no $WEIR: cargo build --release -p weir-broker" >&2; exit 1; }
for c in jq curl; do command -v "$c" >/dev/null || { echo "$c missing" >&2; exit 1; }; done
mkdir -p "$OUT" "$BENCH_ROOT"
WORK="$(mktemp -d "$BENCH_ROOT/bench-cluster.XXXXXX")"
FSTYPE="$(stat -f -c %T "$WORK")"
if [[ "$FSTYPE" == tmpfs || "$FSTYPE" == ramfs ]]; then
    echo "$WORK is on $FSTYPE; set BENCH_ROOT to a disk-backed directory" >&2
    rm -rf "$WORK"
    exit 1
fi

log() { echo "== $*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

# --- processes ------------------------------------------------------------------
# NODE_PID[0] is the single node, NODE_PID[1..3] the cluster nodes.
declare -A NODE_PID=()
CLIENT_PID=""
kafka_port() { echo $(($1 == 0 ? PORT : PORT + 10 + $1)); }
admin_port() { echo $(($1 == 0 ? PORT + 1 : PORT + 20 + $1)); }
raft_port() { echo $((PORT + 30 + $1)); }
node_dir() { if (($1 == 0)); then echo "$WORK/single"; else echo "$WORK/node-$1"; fi; }
PEERS="1@127.0.0.1:$(raft_port 1),2@127.0.0.1:$(raft_port 2),3@127.0.0.1:$(raft_port 3)"
ALL3="127.0.0.1:$(kafka_port 1),127.0.0.1:$(kafka_port 2),127.0.0.1:$(kafka_port 3)"

alive() { [[ -n "${NODE_PID[$1]:-}" ]] && kill -0 "${NODE_PID[$1]}" 2>/dev/null; }

stop_node() { # i [signal]: stop, bounded (SIGKILL after 30 s), and reap
    local i=$1 sig=${2:-TERM} pid=${NODE_PID[$1]:-}
    [[ -n "$pid" ]] || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$(($(now_ms) + 30000))
    while kill -0 "$pid" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "node $i (pid $pid) ignored SIG$sig for 30 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "NODE_PID[$i]"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z "${CLIENT_PID:-}" ]] || kill "$CLIENT_PID" 2>/dev/null || true
    for i in "${!NODE_PID[@]}"; do kill -TERM "${NODE_PID[$i]}" 2>/dev/null || true; done
    for i in "${!NODE_PID[@]}"; do stop_node "$i"; done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node_failed() { # i what: print the node's stderr tail and exit
    local i=$1
    echo "node $i: $2; last lines of $OUT/node-$i.err:" >&2
    tail -n 30 "$OUT/node-$i.err" >&2 || true
    exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_node() { # i: start in the background (not in a subshell: the PID must be ours to wait for)
    local i=$1 dir
    dir="$(node_dir "$i")"
    mkdir -p "$dir"
    local args=(broker --data-dir "$dir" --listen "127.0.0.1:$(kafka_port "$i")"
        --admin-listen "127.0.0.1:$(admin_port "$i")")
    ((i == 0)) || args+=(--node-id "$i" --peers "$PEERS")
    echo "--- start $(date -u +%T.%N)" >>"$OUT/node-$i.err"
    "$WEIR" "${args[@]}" >"$OUT/node-$i.out" 2>>"$OUT/node-$i.err" &
    NODE_PID[$i]=$!
}

wait_listening() { # i [seconds]: until the node prints its listening line
    local i=$1 deadline=$(($(now_ms) + ${2:-60} * 1000))
    until grep -q "weir listening" "$OUT/node-$i.out" 2>/dev/null; do
        alive "$i" || node_failed "$i" "exited before listening"
        (($(now_ms) < deadline)) || node_failed "$i" "not listening after ${2:-60} s"
        sleep 0.05
    done
}

check_alive() { for i in "$@"; do alive "$i" || node_failed "$i" "died"; done; }

start_single() {
    rm -rf "$(node_dir 0)"
    start_node 0
    wait_listening 0 30
}

start_cluster() { # with fresh data directories
    local i
    for i in 1 2 3; do
        rm -rf "$(node_dir "$i")"
        start_node "$i"
    done
    for i in 1 2 3; do wait_listening "$i" 60; done
}

stop_all() { # stop nodes, delete their data, let writeback finish
    local i
    for i in "${!NODE_PID[@]}"; do kill -TERM "${NODE_PID[$i]}" 2>/dev/null || true; done
    for i in "${!NODE_PID[@]}"; do stop_node "$i"; done
    rm -rf "$WORK"/single "$WORK"/node-*
    sync
}

cluster_json() { # i: the node's /v1/cluster (empty if it does not answer)
    curl -sf --max-time 3 "http://127.0.0.1:$(admin_port "$1")/v1/cluster" || true
}

leader_of() { # topic partition nodes...: the node that reports itself leader (empty if none)
    local t=$1 p=$2 i
    shift 2
    for i in "$@"; do
        alive "$i" || continue
        cluster_json "$i" | jq -r --arg t "$t" --argjson p "$p" \
            '.node_id as $n | .partitions[]? | select(.topic == $t and .partition == $p and .leader == $n) | .leader' \
            2>/dev/null || true
    done | head -n1
}

wait_leader() { # topic partition seconds nodes...: prints the leader
    local t=$1 p=$2 secs=$3 l
    shift 3
    local deadline=$(($(now_ms) + secs * 1000))
    while :; do
        l=$(leader_of "$t" "$p" "$@")
        [[ -n "$l" ]] && { echo "$l"; return 0; }
        check_alive "$@"
        (($(now_ms) < deadline)) || { echo "no leader for $t-$p after $secs s" >&2; return 1; }
        sleep 0.1
    done
}

# Every cluster node reports the same leader (which reports itself leader) and
# the same log end for topic-partition: the replicas have caught up.
settled() {
    local t=$1 p=$2 views
    views=$(for i in 1 2 3; do
        cluster_json "$i" | jq -r --arg t "$t" --argjson p "$p" \
            '.node_id as $n | .partitions[]? | select(.topic == $t and .partition == $p) | "\($n) \(.leader) \(.log_end)"' \
            2>/dev/null || true
    done)
    echo "$views" | awk 'NF == 3 {n++; lead[$2]++; end[$3]++; if ($1 == $2) self = 1}
        END {exit !(n == 3 && length(lead) == 1 && length(end) == 1 && self && !(-1 in lead))}'
}

wait_settled() { # topic partition seconds
    local deadline=$(($(now_ms) + $3 * 1000))
    until settled "$1" "$2"; do
        check_alive 1 2 3
        (($(now_ms) < deadline)) || { echo "$1-$2 not settled on all nodes after $3 s" >&2; return 1; }
        sleep 0.1
    done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime+stime of a pid
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# --- machine --------------------------------------------------------------------
for i in 0 1 2 3; do
    for p in $(kafka_port "$i") $(admin_port "$i") $( ((i == 0)) || raft_port "$i"); do
        port_free "$p" || { echo "port $p is in use; set PORT" >&2; exit 1; }
    done
done
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "filesystem: $(df -h "$WORK" | awk 'NR==2{print $1, $2, "size,", $4, "free"}') ($FSTYPE)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "weir: $("$WEIR" --version 2>/dev/null || echo unknown), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "config: ROUNDS=$ROUNDS COUNT=$COUNT SIZE=$SIZE FAILOVERS=$FAILOVERS BIG=$BIG IDLE_SECS=$IDLE_SECS"
} | tee "$OUT/machine.txt" >&2

# --- 1. produce acks=all: single node vs 3-node cluster, RF 3 -------------------
# produce_run kind round bootstrap nodes...: one `weir bench produce`, appends a
# line to runs.tsv: kind round MB/s p50 p99 p99.9 errors node-CPU-s client-CPU-s leader
printf 'kind\tround\tmb_s\tp50\tp99\tp999\terrors\tnode_cpu_s\tclient_cpu_s\tleader\n' >"$OUT/runs.tsv"
produce_run() {
    local kind=$1 r=$2 bs=$3 topic="bench-$1-r$2" rf=1 i
    shift 3
    [[ "$kind" == cluster ]] && rf=3
    "$WEIR" topic create "$topic" -p 1 -r "$rf" -b "$bs" >"$OUT/$kind-r$r.create" 2>&1 \
        || { cat "$OUT/$kind-r$r.create" >&2; exit 1; }
    local leader
    leader=$(wait_leader "$topic" 0 60 "$@")
    local t0=0
    for i in "$@"; do t0=$((t0 + $(cpu_ticks "${NODE_PID[$i]}"))); done
    /usr/bin/time -f '%U %S' -o "$OUT/$kind-r$r.time" \
        "$WEIR" bench produce --bootstrap "$bs" --topic "$topic" --partitions 1 --acks all \
        --count "$COUNT" --message-size "$SIZE" --json >"$OUT/$kind-r$r.raw" 2>"$OUT/$kind-r$r.log" \
        || { check_alive "$@"; tail "$OUT/$kind-r$r.log" >&2; exit 1; }
    check_alive "$@"
    local t1=0
    for i in "$@"; do t1=$((t1 + $(cpu_ticks "${NODE_PID[$i]}"))); done
    tail -n1 "$OUT/$kind-r$r.raw" >"$OUT/$kind-r$r.json"
    rm -f "$OUT/$kind-r$r.raw"
    local node_cpu client_cpu
    node_cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
    client_cpu=$(awk '{printf "%.2f", $1 + $2}' "$OUT/$kind-r$r.time")
    jq -r --arg k "$kind" --arg r "$r" --arg nc "$node_cpu" --arg cc "$client_cpu" --arg l "$leader" \
        '[$k, $r, .mb_per_sec, .latency_ms.p50, .latency_ms.p99, .latency_ms["p99.9"], .errors, $nc, $cc, $l] | @tsv' \
        "$OUT/$kind-r$r.json" >>"$OUT/runs.tsv"
    tail -n1 "$OUT/runs.tsv" | awk -F'\t' '{printf "%-7s round %s: %7.1f MB/s  p50 %.2f  p99 %.2f  p99.9 %.2f ms  errors %s  node CPU %s s  client CPU %s s  leader %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}' >&2
}

for r in $(seq 1 "$ROUNDS"); do
    log "round $r/$ROUNDS: single node"
    start_single
    produce_run single "$r" "127.0.0.1:$(kafka_port 0)" 0
    stop_all
    log "round $r/$ROUNDS: 3-node cluster, RF 3"
    start_cluster
    produce_run cluster "$r" "$ALL3" 1 2 3
    stop_all
done

# --- 2. failover -------------------------------------------------------------
log "failover: $FAILOVERS leader kills"
start_cluster
"$WEIR" topic create fo -p 1 -r 3 -b "$ALL3" >"$OUT/fo.create" 2>&1 || { cat "$OUT/fo.create" >&2; exit 1; }
wait_leader fo 0 60 1 2 3 >/dev/null
wait_settled fo 0 60
printf 'kind\tround\tkilled\tms\trc\tnew_leader\tterm\tleader_seen_ms\n' >"$OUT/failover.tsv"
term_of() { cluster_json "$1" | jq -r '.partitions[]? | select(.topic == "fo" and .partition == 0) | .term' 2>/dev/null || true; }

# Baseline: the same one-record produce to two followers with nothing killed
# (process start, metadata, one acks=all round trip).
for b in 1 2 3; do
    l=$(wait_leader fo 0 60 1 2 3)
    surv=$(for i in 1 2 3; do ((i == l)) || printf '127.0.0.1:%s,' "$(kafka_port "$i")"; done)
    t0=$(now_ms)
    echo "baseline $b" | timeout 120 "$WEIR" produce fo -p 0 --acks all -b "${surv%,}" \
        >"$OUT/fo-baseline-$b.out" 2>"$OUT/fo-baseline-$b.err" || { cat "$OUT/fo-baseline-$b.err" >&2; exit 1; }
    ms=$(($(now_ms) - t0))
    printf 'baseline\t%s\t-\t%s\t0\t%s\t%s\t-\n' "$b" "$ms" "$l" "$(term_of "$l")" >>"$OUT/failover.tsv"
    log "baseline $b: $ms ms (leader $l)"
done

for f in $(seq 1 "$FAILOVERS"); do
    wait_settled fo 0 60
    l=$(wait_leader fo 0 60 1 2 3)
    surv=$(for i in 1 2 3; do ((i == l)) || printf '127.0.0.1:%s,' "$(kafka_port "$i")"; done)
    pid=${NODE_PID[$l]}
    t0=$(now_ms)
    kill -9 "$pid"
    # The produce runs in the background (it records its exit status and end
    # time) while the survivors are polled for the moment one reports itself
    # leader of the partition.
    (
        rc=0
        echo "failover $f" | timeout 120 "$WEIR" produce fo -p 0 --acks all -b "${surv%,}" \
            >"$OUT/fo-$f.out" 2>"$OUT/fo-$f.err" || rc=$?
        echo "$rc $(now_ms)" >"$OUT/fo-$f.end"
    ) &
    CLIENT_PID=$!
    wait "$pid" 2>/dev/null || true
    unset "NODE_PID[$l]"
    others=$(for i in 1 2 3; do ((i == l)) || echo "$i"; done)
    # shellcheck disable=SC2086
    nl=$(wait_leader fo 0 60 $others)
    elect_ms=$(($(now_ms) - t0))
    wait "$CLIENT_PID" || true
    CLIENT_PID=""
    read -r rc t1 <"$OUT/fo-$f.end"
    ms=$((t1 - t0))
    printf 'failover\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$l" "$ms" "$rc" "$nl" "$(term_of "$nl")" "$elect_ms" >>"$OUT/failover.tsv"
    if ((rc == 0)); then
        log "failover $f: killed node $l, new leader $nl seen after $elect_ms ms, produce ok after $ms ms"
    else
        log "failover $f: killed node $l, new leader $nl seen after $elect_ms ms, produce FAILED (exit $rc) after $ms ms: $(tail -n1 "$OUT/fo-$f.err")"
    fi
    start_node "$l"
    wait_listening "$l" 60
done
wait_settled fo 0 60

# --- 3. a 1000-partition RF-3 topic: create time, idle CPU ---------------------
idle_cpu() { # label [nodes...]: CPU % of one core and RSS of each node over IDLE_SECS
    local label=$1 i a=() t0 t1 nodes
    shift
    nodes=("$@")
    ((${#nodes[@]})) || nodes=(1 2 3)
    check_alive "${nodes[@]}"
    for i in "${nodes[@]}"; do a[i]=$(cpu_ticks "${NODE_PID[$i]}"); done
    t0=$(date +%s%N)
    sleep "$IDLE_SECS" # the measurement window, not a wait for readiness
    t1=$(date +%s%N)
    check_alive "${nodes[@]}"
    for i in "${nodes[@]}"; do
        awk -v l="$label" -v n="$i" -v a="${a[$i]}" -v b="$(cpu_ticks "${NODE_PID[$i]}")" -v hz="$HZ" \
            -v t0="$t0" -v t1="$t1" -v rss="$(rss_mb "${NODE_PID[$i]}")" \
            'BEGIN {printf "%s\t%s\t%.1f\t%s\n", l, n, 100 * (b - a) / hz / ((t1 - t0) / 1e9), rss}'
    done | tee -a "$OUT/idle.tsv" >&2
}
printf 'label\tnode\tcpu_pct\trss_mb\n' >"$OUT/idle.tsv"
CREATE_MS="" CREATE_RC="" SETTLE_MS="" PARTS_PER_NODE=""
if ((BIG > 0)); then
    log "idle CPU before the big topic ($IDLE_SECS s)"
    idle_cpu "before"
    log "topic create big -p $BIG -r 3"
    t0=$(now_ms)
    CREATE_RC=0
    timeout 900 "$WEIR" topic create big -p "$BIG" -r 3 -b "$ALL3" >"$OUT/big.create" 2>&1 || CREATE_RC=$?
    CREATE_MS=$(($(now_ms) - t0))
    log "create: exit $CREATE_RC after $CREATE_MS ms: $(tail -n1 "$OUT/big.create")"
    check_alive 1 2 3
    # Until every node hosts all partitions and knows each one's leader.
    deadline=$(($(now_ms) + 900000))
    while :; do
        counts=$(for i in 1 2 3; do
            cluster_json "$i" | jq '[.partitions[]? | select(.topic == "big" and .leader >= 0)] | length' 2>/dev/null || echo 0
        done | paste -sd' ')
        [[ "$counts" == "$BIG $BIG $BIG" ]] && break
        check_alive 1 2 3
        (($(now_ms) < deadline)) || { echo "big: partitions with a leader per node after 900 s: $counts" >&2; exit 1; }
        sleep 0.5
    done
    SETTLE_MS=$(($(now_ms) - t0))
    PARTS_PER_NODE=$(cluster_json 1 | jq '.partitions | length')
    log "all $BIG partitions led, on every node, $SETTLE_MS ms after the create began ($PARTS_PER_NODE partitions on node 1)"
    log "idle CPU with $BIG partitions ($IDLE_SECS s)"
    idle_cpu "big"
    cluster_json 1 | jq -r '[.partitions[] | select(.topic == "big") | .leader] | group_by(.) | map("node \(.[0]): \(length)") | join(", ")' \
        >"$OUT/big-leaders.txt"
    # The same partitions with node 3 killed: the survivors lead them all,
    # and each group keeps a follower it cannot reach.
    kill -9 "${NODE_PID[3]}"
    wait "${NODE_PID[3]}" 2>/dev/null || true
    deadline=$(($(now_ms) + 300000))
    while :; do
        led=$(cluster_json 1 | jq '[.partitions[]? | select(.topic == "big" and (.leader == 1 or .leader == 2))] | length' 2>/dev/null || echo 0)
        [[ "$led" == "$BIG" ]] && break
        check_alive 1 2
        (($(now_ms) < deadline)) || { echo "big: $led of $BIG partitions led by the survivors after 300 s" >&2; exit 1; }
        sleep 0.5
    done
    log "idle CPU with $BIG partitions, node 3 down ($IDLE_SECS s)"
    idle_cpu "big, node 3 down" 1 2
fi
stop_all

# --- fio ------------------------------------------------------------------------
FIO_RAN=0
if [[ "$FIO" == 1 ]] && command -v fio >/dev/null; then
    FIO_RAN=1
    fio_job() { # name bs size runtime
        log "fio $1: write + fdatasync, bs $2"
        fio --name="$1" --directory="$WORK" --filename="fio-$1" --rw=write --bs="$2" --size="$3" \
            --ioengine=psync --numjobs=1 --fdatasync=1 --runtime="$4" --output-format=json >"$OUT/fio-$1.json"
        rm -f "$WORK/fio-$1"
    }
    fio_job fdatasync-256k 256k "$((COUNT * SIZE))" 30
    fio_job fdatasync-4k 4k 64m 15
elif [[ "$FIO" == 1 ]]; then
    log "fio not installed: skipping the disk's limits"
fi

# --- summary --------------------------------------------------------------------
col() { awk -F'\t' -v k="$1" -v c="$2" 'NR > 1 && $1 == k {print $c}' "$3"; }
{
    echo
    echo "=== Weir cluster benchmark, $(date -u +%FT%TZ), load average now $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "produce acks=all, 1 partition, $COUNT x $SIZE B, $ROUNDS interleaved rounds; medians (runs)"
    for k in single cluster; do
        mapfile -t mbs < <(col "$k" 3 "$OUT/runs.tsv"); mapfile -t p50 < <(col "$k" 4 "$OUT/runs.tsv")
        mapfile -t p99 < <(col "$k" 5 "$OUT/runs.tsv"); mapfile -t p999 < <(col "$k" 6 "$OUT/runs.tsv")
        mapfile -t ncpu < <(col "$k" 8 "$OUT/runs.tsv"); mapfile -t ccpu < <(col "$k" 9 "$OUT/runs.tsv")
        err=$(col "$k" 7 "$OUT/runs.tsv" | awk '{s += $1} END {print s + 0}')
        label=$([[ $k == single ]] && echo "single node" || echo "3 nodes, RF 3")
        printf '  %-14s %7.1f MB/s (%s)  p50 %s ms (%s)  p99 %s ms (%s)  p99.9 %s ms  errors %s\n' \
            "$label" "$(median "${mbs[@]}")" "$(printf '%.1f ' "${mbs[@]}" | xargs | tr ' ' ',')" \
            "$(median "${p50[@]}")" "$(echo "${p50[*]}" | tr ' ' ',')" \
            "$(median "${p99[@]}")" "$(echo "${p99[*]}" | tr ' ' ',')" "$(median "${p999[@]}")" "$err"
        printf '  %-14s CPU per run: nodes %s s, client %s s (medians)\n' "" "$(median "${ncpu[@]}")" "$(median "${ccpu[@]}")"
    done
    # Ratios per round (cluster / single of the same round), then their median.
    ratios() { paste <(col single "$1" "$OUT/runs.tsv") <(col cluster "$1" "$OUT/runs.tsv") | awk '{printf "%.2f\n", $2 / $1}'; }
    mapfile -t tr_ < <(ratios 3); mapfile -t lr50 < <(ratios 4); mapfile -t lr99 < <(ratios 5)
    echo "  cluster / single, per round: throughput ${tr_[*]} (median $(median "${tr_[@]}")); p50 ${lr50[*]} (median $(median "${lr50[@]}")); p99 ${lr99[*]} (median $(median "${lr99[@]}"))"
    echo "  cluster leaders per round: $(col cluster 10 "$OUT/runs.tsv" | paste -sd' ')"
    echo
    mapfile -t fo < <(awk -F'\t' '$1 == "failover" && $5 == 0 {print $4}' "$OUT/failover.tsv")
    nfail=$(awk -F'\t' '$1 == "failover" && $5 != 0' "$OUT/failover.tsv" | wc -l)
    mapfile -t base < <(col baseline 4 "$OUT/failover.tsv")
    if ((${#fo[@]} > 0)); then
        printf '  failover (kill -9 leader -> one acks=all produce ok), %s of %s: median %s ms, min %s, max %s (ms: %s)\n' \
            "${#fo[@]}" "$FAILOVERS" "$(median "${fo[@]}")" "$(printf '%s\n' "${fo[@]}" | sort -n | head -1)" \
            "$(printf '%s\n' "${fo[@]}" | sort -n | tail -1)" "$(echo "${fo[*]}" | tr ' ' ',')"
    fi
    ((nfail == 0)) || echo "  failover: $nfail produce(s) FAILED, see $OUT/failover.tsv and fo-*.err"
    echo "  same produce with nothing killed (process start + metadata + commit): median $(median "${base[@]}") ms (${base[*]})"
    mapfile -t seen < <(awk -F'\t' '$1 == "failover" {print $8}' "$OUT/failover.tsv")
    if ((${#seen[@]} > 0)); then
        printf '  kill -> a survivor reports itself leader (polled /v1/cluster): median %s ms, min %s, max %s (ms: %s)\n' \
            "$(median "${seen[@]}")" "$(printf '%s\n' "${seen[@]}" | sort -n | head -1)" \
            "$(printf '%s\n' "${seen[@]}" | sort -n | tail -1)" "$(echo "${seen[*]}" | tr ' ' ',')"
    fi
    echo "  killed -> new leader: $(awk -F'\t' '$1 == "failover" {printf "%s->%s(t%s) ", $3, $6, $7}' "$OUT/failover.tsv")"
    if ((BIG > 0)); then
        echo
        echo "  topic create big -p $BIG -r 3: $(awk -v m="$CREATE_MS" 'BEGIN {printf "%.1f", m / 1000}') s, exit $CREATE_RC ($(tail -n1 "$OUT/big.create"))"
        echo "  all $BIG partitions led on every node: $(awk -v m="$SETTLE_MS" 'BEGIN {printf "%.1f", m / 1000}') s after the create began; $PARTS_PER_NODE partitions per node; leaders $(cat "$OUT/big-leaders.txt")"
        for label in before big; do
            echo "  idle CPU over $IDLE_SECS s, $label: $(awk -F'\t' -v l="$label" '$1 == l {printf "node %s %s %% of a core (RSS %s MB)  ", $2, $3, $4}' "$OUT/idle.tsv")"
        done
    fi
    if ((FIO_RAN)); then
        echo
        for j in fdatasync-256k fdatasync-4k; do
            jq -r --arg j "$j" '.jobs[0] | "  fio \($j): \(.write.bw_bytes / 1048576 * 100 | round / 100) MB/s, \(.write.iops | round) fdatasyncs/s, fdatasync p50 \(.sync.lat_ns.percentile["50.000000"] / 1e6 * 100 | round / 100) ms p99 \(.sync.lat_ns.percentile["99.000000"] / 1e6 * 100 | round / 100) ms"' \
                "$OUT/fio-$j.json"
        done
    fi
    echo
    echo "results: $OUT"
} | tee "$OUT/summary.txt"
