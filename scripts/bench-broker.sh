#!/usr/bin/env bash
# Single-node broker benchmark: `weir bench` against a fresh Weir node (and,
# optionally, a peer Kafka-compatible broker) beside fio's limits for the same
# durability patterns, all measured in one run on the same filesystem.
#
#   scripts/bench-broker.sh                 # build nothing; uses target/release/weir
#   RUNS=2 COUNT=2000000 scripts/bench-broker.sh
#   PEER=tansu scripts/bench-broker.sh      # also bench tansu (TANSU_BIN)
#
# Per run: produce acks=1, produce acks=all (default window of 5 requests, and
# 20), consume (of the acks=1 topic), then produce paced at half of each peak
# (acks=1 and acks=all; acks=1 also with linger 0) for latency.
# Then fio: buffered sequential write at the producer's average batch size
# (acks=1), write + fdatasync at that size and at the bytes per fsync the
# broker's group commit achieved (acks=all), and sequential page-cache read
# (consume). A separate acks=1 run under `perf record` profiles the CPU.
#
# Environment:
#   RUNS        runs of each weir figure (default 2; the table shows medians)
#   COUNT       messages per unthrottled produce (default 2000000, 1 KiB each)
#   SIZE        message size (default 1024)
#   PACED_SECS  duration of the paced runs (default 10)
#   PEER        "tansu" to bench it too (default: none)
#   TANSU_BIN   default /tmp/tansu-dyn/bin/tansu: tansu 0.6.0 must be built with
#               `cargo install tansu --locked --features dynostore`; the default
#               features include no storage engine and `tansu broker` exits with
#               FeatureNotEnabled { feature: "dynostore" }. Note: `weir bench consume`
#               reads 0 records from tansu 0.6.0 (see BENCHMARKS.md).
#   PERF        1 to profile an extra acks=1 run with perf (default 1)
#   FIO         1 to run fio (default 1)
#   BENCH_ROOT  where the data directories go (default target/; must not be tmpfs)
#   PORT        base port (default 29092; uses PORT, PORT+1, PORT+2)
#   RESULTS     an earlier run's result directory: skip the brokers, rerun fio and the summary
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WEIR="${WEIR:-$ROOT/target/release/weir}"
RUNS="${RUNS:-2}"
COUNT="${COUNT:-2000000}"
SIZE="${SIZE:-1024}"
PACED_SECS="${PACED_SECS:-10}"
PEER="${PEER:-}"
TANSU_BIN="${TANSU_BIN:-/tmp/tansu-dyn/bin/tansu}"
PERF="${PERF:-1}"
FIO="${FIO:-1}"
BENCH_ROOT="${BENCH_ROOT:-$ROOT/target}"
PORT="${PORT:-29092}"
ADMIN_PORT=$((PORT + 1))
PEER_PORT=$((PORT + 2))
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${RESULTS:-$ROOT/target/bench-results/broker-$STAMP}"

[[ -x "$WEIR" ]] || { echo "no $WEIR: cargo build --release -p weir-broker" >&2; exit 1; }
command -v fio >/dev/null || { [[ "$FIO" == 0 ]] || { echo "fio missing (apt-get install -y fio)" >&2; exit 1; }; }
command -v jq >/dev/null || { echo "jq missing" >&2; exit 1; }
mkdir -p "$OUT" "$BENCH_ROOT"
WORK="$(mktemp -d "$BENCH_ROOT/bench-broker.XXXXXX")"
FSTYPE="$(stat -f -c %T "$WORK")"
if [[ "$FSTYPE" == tmpfs || "$FSTYPE" == ramfs ]]; then
    echo "$WORK is on $FSTYPE; set BENCH_ROOT to a disk-backed directory" >&2
    exit 1
fi

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

# --- machine --------------------------------------------------------------------
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "filesystem: $(df -h "$WORK" | awk 'NR==2{print $1, $2, "size,", $4, "free"}') ($FSTYPE)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "weir: $("$WEIR" --version 2>/dev/null || echo unknown), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "fio: $(fio --version 2>/dev/null || echo none)"
} | tee "$OUT/machine${RESULTS:+-fio}.txt" >&2

wait_port() { # host:port, seconds
    local hp="$1" t="${2:-30}"
    for _ in $(seq $((t * 10))); do
        if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $hp after ${t}s" >&2
    return 1
}

cpu_ticks() { # utime+stime of a pid, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

weir_metric() { # name [label-filter]
    curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" -v l="${2:-}" \
        'index($0, n) == 1 && (l == "" || index($0, l)) {print $NF; f=1} END {if (!f) print 0}'
}

# bench NAME BOOTSTRAP BROKER_PID OUTFILE ARGS...: runs `weir bench`, saves its JSON
# with the broker's and the client's CPU seconds (and, for weir, request counts).
bench() {
    local name="$1" bootstrap="$2" bpid="$3" out="$4"
    shift 4
    local t0 r0 b0
    t0=$(cpu_ticks "$bpid")
    if [[ "$name" == weir ]]; then
        r0=$(weir_metric weir_requests_total 'api_key="0"')
        b0=$(weir_metric weir_produce_bytes_total)
    fi
    fsyncs_start "$bpid"
    log "$name: weir bench $* -> $(basename "$out")"
    /usr/bin/time -f '%U %S' -o "$out.time" "$WEIR" bench "$@" -b "$bootstrap" --json \
        >"$out.raw" 2>"$out.log"
    fsyncs_stop
    local fsyncs="$FSYNCS"
    local t1 client_cpu broker_cpu
    t1=$(cpu_ticks "$bpid")
    broker_cpu=$(echo "$t0 $t1" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($2 - $1) / hz}')
    client_cpu=$(awk '{printf "%.2f", $1 + $2}' "$out.time")
    local extra="{\"load_avg_1m_after\": $(cut -d' ' -f1 /proc/loadavg), \"broker\": \"$name\", \"broker_cpu_secs\": $broker_cpu, \"client_cpu_secs\": $client_cpu, \"fdatasyncs\": ${fsyncs:-null}}"
    if [[ "$name" == weir ]]; then
        local r1 b1
        r1=$(weir_metric weir_requests_total 'api_key="0"')
        b1=$(weir_metric weir_produce_bytes_total)
        extra=$(jq -n --argjson e "$extra" --argjson r $((r1 - r0)) --argjson b $((b1 - b0)) \
            '$e + {produce_requests: $r, produce_record_bytes: $b}')
    fi
    tail -n1 "$out.raw" | jq --argjson e "$extra" '. + $e' >"$out"
    rm -f "$out.raw" "$out.time"
}

# Counting the broker's fdatasync calls needs perf tracepoints; optional.
PERF_FSYNC=0
if [[ "$PERF" == 1 ]] && perf stat -e syscalls:sys_enter_fdatasync -x, true >/dev/null 2>&1; then
    PERF_FSYNC=1
fi
FSYNC_PID=""
FSYNC_FILE="$WORK/fsyncs.csv"
fsyncs_start() { # pid: counts its fdatasync/fsync calls until fsyncs_stop
    [[ "$PERF_FSYNC" == 1 ]] || return 0
    rm -f "$FSYNC_FILE"
    perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "$1" \
        -o "$FSYNC_FILE" >/dev/null 2>&1 &
    FSYNC_PID=$!
    sleep 0.2
}
fsyncs_stop() { # sets FSYNCS to the count, if counting
    FSYNCS=""
    [[ -n "$FSYNC_PID" ]] || return 0
    kill -INT "$FSYNC_PID" 2>/dev/null || true
    wait "$FSYNC_PID" 2>/dev/null || true
    FSYNC_PID=""
    FSYNCS=$(awk -F, '/syscalls/ {s += $1} END {print s + 0}' "$FSYNC_FILE")
}

start_weir() {
    local dir="$WORK/weir-data"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$WEIR" broker --data-dir "$dir" --listen "127.0.0.1:$PORT" \
        --admin-listen "127.0.0.1:$ADMIN_PORT" --group-initial-rebalance-delay-ms 0 \
        >"$OUT/weir-broker.log" 2>&1 &
    WEIR_PID=$!
    PIDS+=("$WEIR_PID")
    wait_port "127.0.0.1:$PORT"
}

start_tansu() {
    [[ -x "$TANSU_BIN" ]] || { echo "no tansu binary at $TANSU_BIN" >&2; return 1; }
    # tansu has no local-file log; its memory engine is the closest to a
    # page-cache log (nothing reaches the disk, so its acks=all is not durable).
    "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$PEER_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PEER_PORT" \
        --storage-engine "memory://tansu/" \
        >"$OUT/tansu-broker.log" 2>&1 &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    wait_port "127.0.0.1:$PEER_PORT"
}

# suite NAME BOOTSTRAP PID RUN: the unthrottled and paced figures of one run.
suite() {
    local name="$1" bs="$2" pid="$3" run="$4"
    local p="$OUT/$name-run$run"
    bench "$name" "$bs" "$pid" "$p-produce-acks1.json" produce -t "bench-acks1-r$run" \
        -n "$COUNT" -s "$SIZE" --acks 1
    bench "$name" "$bs" "$pid" "$p-produce-acksall.json" produce -t "bench-acksall-r$run" \
        -n "$COUNT" -s "$SIZE" --acks all
    bench "$name" "$bs" "$pid" "$p-consume.json" consume -t "bench-acks1-r$run" \
        -n "$COUNT" --idle-timeout 5
    # The producer's default window (5 requests of 256 KiB) caps acks=all at about
    # 1.25 MiB per fsync round trip; a deeper window shows what the broker can take.
    bench "$name" "$bs" "$pid" "$p-produce-acksall-mif20.json" produce \
        -t "bench-acksall-mif20-r$run" -n "$COUNT" -s "$SIZE" --acks all --max-in-flight 20
    local half
    for acks in 1 all; do
        half=$(jq '.msgs_per_sec / 2 | floor' "$p-produce-acks$acks.json")
        bench "$name" "$bs" "$pid" "$p-paced-acks$acks.json" produce \
            -t "bench-paced-acks$acks-r$run" -d "$PACED_SECS" -s "$SIZE" --acks "$acks" \
            --rate "$half"
    done
    # The same acks=1 rate without linger: latency of the broker rather than of batching.
    half=$(jq '.msgs_per_sec / 2 | floor' "$p-produce-acks1.json")
    bench "$name" "$bs" "$pid" "$p-paced-acks1-linger0.json" produce \
        -t "bench-paced-acks1-l0-r$run" -d "$PACED_SECS" -s "$SIZE" --acks 1 --rate "$half" \
        --linger-ms 0
}

DATA_BYTES=0
if [[ -z "${RESULTS:-}" ]]; then
# --- weir -----------------------------------------------------------------------
start_weir
for run in $(seq "$RUNS"); do
    suite weir "127.0.0.1:$PORT" "$WEIR_PID" "$run"
done

if [[ "$PERF" == 1 ]] && command -v perf >/dev/null; then
    log "perf: acks=1 produce, broker and client, sampling at 997 Hz"
    perf record -F 997 -g -a -o "$OUT/perf.data" -- sleep 600 >/dev/null 2>"$OUT/perf-record.log" &
    PERF_PID=$!
    sleep 1
    "$WEIR" bench produce -b "127.0.0.1:$PORT" -t bench-perf -n "$COUNT" -s "$SIZE" --acks 1 \
        --json >"$OUT/weir-perf-produce-acks1.json.raw" 2>"$OUT/weir-perf.log" &
    CLIENT_PID=$!
    sleep 1
    # perf report keys samples by thread id: remember whose threads are whose.
    ls "/proc/$WEIR_PID/task" | sed 's/$/ broker/' >"$OUT/perf-threads.txt"
    ls "/proc/$CLIENT_PID/task" 2>/dev/null | sed 's/$/ client/' >>"$OUT/perf-threads.txt" || true
    wait "$CLIENT_PID"
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    tail -n1 "$OUT/weir-perf-produce-acks1.json.raw" >"$OUT/weir-perf-produce-acks1.json"
    rm -f "$OUT/weir-perf-produce-acks1.json.raw"
    set +o pipefail # `head` closes pipes early below
    perf report -i "$OUT/perf.data" --no-children --sort pid,dso,sym -g none --stdio 2>/dev/null \
        | grep -v '^#' | grep -v '^$' >"$OUT/perf-by-thread.txt" || true
    awk '
        NR == FNR { who[$1] = $2; next }
        {
            pct = $1; sub(/%/, "", pct); split($2, t, ":"); tid = t[1]
            g = (tid in who) ? who[tid] : "other"
            total[g] += pct; all += pct
            # $3 is the dso; the symbol is everything after the [k]/[.] marker
            sym = $0; sub(/^.*\[[k.]\] /, "", sym)
            key = g "\t" $3 "\t" sym
            self[key] += pct
        }
        END {
            printf "# share of all CPU samples (2 CPUs, whole machine) during the profiled acks=1 run\n"
            # (perf report percentages need not add up to 100 here: normalise)
            for (g in total) printf "%-8s %6.2f %%\n", g, 100 * total[g] / all
            for (k in self) print 100 * self[k] / all "\t" k > "/dev/stderr"
        }' "$OUT/perf-threads.txt" "$OUT/perf-by-thread.txt" >"$OUT/perf-summary.txt" \
        2>"$OUT/perf-symbols.tsv"
    for g in broker client; do
        {
            echo
            echo "# $g: top symbols (% of all samples; dso, symbol)"
            awk -F'\t' -v g="$g" '$2 == g' "$OUT/perf-symbols.tsv" | sort -t$'\t' -k1,1gr \
                | head -25 | awk -F'\t' '{printf "%6.2f %%  %-14s %s\n", $1, $3, $4}'
            echo "# $g: by shared object"
            awk -F'\t' -v g="$g" '$2 == g {d[$3] += $1} END {for (k in d) printf "%6.2f %%  %s\n", d[k], k}' \
                "$OUT/perf-symbols.tsv" | sort -gr | head -6
        } >>"$OUT/perf-summary.txt"
    done
    echo "broker_pid=$WEIR_PID client_pid=$CLIENT_PID" >>"$OUT/perf-summary.txt"
    set -o pipefail
fi
kill "$WEIR_PID"
wait "$WEIR_PID" 2>/dev/null || true
DATA_BYTES=$(du -sb "$WORK/weir-data" | cut -f1)
rm -rf "$WORK/weir-data"

# --- peer -----------------------------------------------------------------------
if [[ "$PEER" == tansu ]]; then
    if start_tansu; then
        suite tansu "127.0.0.1:$PEER_PORT" "$PEER_PID" 1 || log "tansu suite failed"
        kill "$PEER_PID" 2>/dev/null || true
        wait "$PEER_PID" 2>/dev/null || true
    else
        log "tansu did not start; see $OUT/tansu-broker.log"
    fi
fi

fi # RESULTS

# --- fio ------------------------------------------------------------------------
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "null"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
weir_med() { # file-suffix jq-expr
    for f in "$OUT"/weir-run*-"$1".json; do jq -r "$2" "$f"; done | median
}

# The producer's batch size: record bytes per Produce request, as the broker counted.
BATCH=$(weir_med produce-acks1 '.produce_record_bytes / .produce_requests | floor')
BATCH_ALL=$(weir_med produce-acksall '.produce_record_bytes / .produce_requests | floor')
PER_FSYNC=$(weir_med produce-acksall 'if .fdatasyncs then .produce_record_bytes / .fdatasyncs | floor else null end')
PER_FSYNC20=$(weir_med produce-acksall-mif20 'if .fdatasyncs then .produce_record_bytes / .fdatasyncs | floor else null end')
round4k() { awk -v b="$1" 'BEGIN {k = int((b + 2048) / 4096) * 4096; if (k < 4096) k = 4096; print k}'; }
FIO_SIZE=$((COUNT * SIZE))

fio_job() { # name rw bs extra-args...
    local name="$1" rw="$2" bs="$3"
    shift 3
    log "fio $name: $rw bs=$bs $*"
    fio --name="$name" --directory="$WORK" --filename="fio-$name" --rw="$rw" --bs="$bs" \
        --size="$FIO_SIZE" --ioengine=psync --numjobs=1 --runtime=60 \
        --output-format=json "$@" >"$OUT/fio-$name.json"
    jq -c --arg n "$name" '{name: $n, mb_per_sec: ((.jobs[0].write.bw_bytes + .jobs[0].read.bw_bytes) / 1048576),
        write_iops: .jobs[0].write.iops, sync_p99_ms: ((.jobs[0].sync.lat_ns.percentile["99.000000"] // 0) / 1e6)}' \
        "$OUT/fio-$name.json" >"$OUT/fio-$name.summary.json"
}

if [[ "$FIO" == 1 ]]; then
    BS1=$(round4k "$BATCH")
    BSA=$(round4k "$BATCH_ALL")
    fio_job buffered-write write "$BS1" --end_fsync=0
    # Reads the file the previous job left in the page cache (no invalidation).
    fio_job pagecache-read read 1M --invalidate=0
    rm -f "$WORK/fio-buffered-write"
    fio_job fdatasync-write write "$BSA" --fdatasync=1
    rm -f "$WORK/fio-fdatasync-write"
    if [[ "$PER_FSYNC" != null ]]; then
        BSF=$(round4k "$PER_FSYNC")
        if [[ "$BSF" != "$BSA" ]]; then
            fio_job fdatasync-write-groupsize write "$BSF" --fdatasync=1
            rm -f "$WORK/fio-fdatasync-write-groupsize"
        fi
    fi
    if [[ "$PER_FSYNC20" != null ]]; then
        fio_job fdatasync-write-groupsize-mif20 write "$(round4k "$PER_FSYNC20")" --fdatasync=1
        rm -f "$WORK/fio-fdatasync-write-groupsize-mif20"
    fi
fi

# --- summary --------------------------------------------------------------------
python3 - "$OUT" "$RUNS" "$DATA_BYTES" <<'PY'
import json, glob, os, statistics, sys
out, runs, data_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, pattern)))]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fig(broker, kind):
    rs = load(f"{broker}-run*-{kind}.json")
    if not rs:
        return None
    lat = lambda q: med([r["latency_ms"].get(q) for r in rs])
    return {
        "runs": len(rs),
        "mb_per_sec": med([r["mb_per_sec"] for r in rs]),
        "mb_per_sec_all": [round(r["mb_per_sec"], 1) for r in rs],
        "msgs_per_sec": med([r["msgs_per_sec"] for r in rs]),
        "p50_ms": lat("p50"), "p99_ms": lat("p99"), "p999_ms": lat("p99.9"),
        "errors": sum(r["errors"] for r in rs),
        "avg_batch_bytes_client": med([r.get("avg_batch_bytes") for r in rs]),
        "avg_batch_bytes_broker": med([r["produce_record_bytes"] / r["produce_requests"]
                                       for r in rs if r.get("produce_requests")]),
        "fdatasyncs": med([r.get("fdatasyncs") for r in rs]),
        "broker_cpu_secs_per_gb": med([r["broker_cpu_secs"] / (r["bytes"] / 2**30) for r in rs if r["bytes"]]),
        "client_cpu_secs_per_gb": med([r["client_cpu_secs"] / (r["bytes"] / 2**30) for r in rs if r["bytes"]]),
    }

def fio(name):
    f = os.path.join(out, f"fio-{name}.summary.json")
    if not os.path.exists(f):
        return None
    s = json.load(open(f))
    j = json.load(open(os.path.join(out, f"fio-{name}.json")))
    s["bs"] = j["jobs"][0]["job options"].get("bs")
    return s

kinds = ["produce-acks1", "produce-acksall", "produce-acksall-mif20", "consume",
         "paced-acks1", "paced-acks1-linger0", "paced-acksall"]
summary = {
    "machine": open(os.path.join(out, "machine.txt")).read().splitlines(),
    "weir": {k: fig("weir", k) for k in kinds},
    "tansu": {k: fig("tansu", k) for k in kinds},
    "fio": {n: fio(n) for n in ["buffered-write", "fdatasync-write", "fdatasync-write-groupsize",
                                "fdatasync-write-groupsize-mif20", "pagecache-read"]},
    "weir_data_dir_bytes": data_bytes,
}
fio_for = {"produce-acks1": "buffered-write", "produce-acksall": "fdatasync-write",
           "produce-acksall-mif20": "fdatasync-write", "consume": "pagecache-read"}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)

def f(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)

print()
print(f"| figure | weir MB/s (runs) | p50 / p99 ms | fio MB/s (job, bs) | weir/fio | tansu MB/s | p50 / p99 ms | weir/tansu |")
print("|---|---|---|---|---|---|---|---|")
for k in kinds:
    w, t = summary["weir"][k], summary["tansu"][k]
    if w is None:
        continue
    fj = summary["fio"].get(fio_for.get(k, ""), None)
    fio_s = f"{fj['mb_per_sec']:.1f} ({fio_for[k]}, {fj['bs']})" if fj else "-"
    ratio = f"{w['mb_per_sec'] / fj['mb_per_sec'] * 100:.0f} %" if fj else "-"
    tr = f"{w['mb_per_sec'] / t['mb_per_sec']:.2f}x" if t and t["mb_per_sec"] else "-"
    print(f"| {k} | {w['mb_per_sec']:.1f} ({', '.join(map(str, w['mb_per_sec_all']))}) | "
          f"{f(w['p50_ms'], '{:.2f}')} / {f(w['p99_ms'], '{:.2f}')} | {fio_s} | {ratio} | "
          f"{f(t and t['mb_per_sec'])} | {f(t and t['p50_ms'], '{:.2f}')} / {f(t and t['p99_ms'], '{:.2f}')} | {tr} |")
print()
for job, k in [("fdatasync-write-groupsize", "produce-acksall"),
               ("fdatasync-write-groupsize-mif20", "produce-acksall-mif20")]:
    g, w = summary["fio"].get(job), summary["weir"].get(k)
    if g and w:
        print(f"fio write+fdatasync at the bytes per broker fsync of {k} ({g['bs']}): "
              f"{g['mb_per_sec']:.1f} MB/s, fdatasync p99 {g['sync_p99_ms']:.1f} ms; weir/fio {w['mb_per_sec'] / g['mb_per_sec'] * 100:.0f} %")
for k in ["produce-acks1", "produce-acksall", "produce-acksall-mif20"]:
    w = summary["weir"][k]
    if w is None:
        continue
    print(f"{k}: avg batch {f(w['avg_batch_bytes_broker'], '{:.0f}')} B (broker), "
          f"{f(w['avg_batch_bytes_client'], '{:.0f}')} B (client estimate), "
          f"fdatasyncs {f(w['fdatasyncs'], '{:.0f}')}, CPU s/GiB broker {f(w['broker_cpu_secs_per_gb'], '{:.2f}')} "
          f"client {f(w['client_cpu_secs_per_gb'], '{:.2f}')}")
print(f"\nresults: {out}")
PY
