"""The bench-stream.sh queries in Flink SQL (PyFlink, local mini-cluster,
streaming mode, parallelism 1, heap state, no checkpoints, blackhole sink)
over the same JSON events, with event time from `ts` and a 5 s watermark
delay (Weir's jobs use a 5 s grace). Prints Flink's events per CPU-second of
its JVM (utime + stime from /proc) for a whole run over N events (job
start-up included, as in Weir's figures), and in steady state: the
difference between a run over the first 100,000 events and one over all N.
A first, unmeasured run warms the JVM up.

    target/flinkenv/bin/python scripts/flink_stream.py events.jsonl N
"""
import os
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

path, n = sys.argv[1], int(sys.argv[2])
small_n = min(100_000, n // 4)
small = path + ".small"
with open(path) as src, open(small, "w") as dst:
    for i, line in enumerate(src):
        if i >= small_n:
            break
        dst.write(line)


def jvm_cpu():
    """CPU seconds of the JVMs this process started (PyFlink's gateway runs the mini-cluster)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and b"java" in cmd:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("parallelism.default", "1")
QUERIES = {
    "tumble": (
        "customerId INT, window_start TIMESTAMP(3), total DOUBLE, n BIGINT",
        "SELECT customerId, TUMBLE_START(rowtime, INTERVAL '30' SECOND), SUM(transactionSum), COUNT(*) "
        "FROM {t} GROUP BY customerId, TUMBLE(rowtime, INTERVAL '30' SECOND)",
    ),
    "hop": (
        "customerId INT, window_start TIMESTAMP(3), n BIGINT",
        "SELECT customerId, HOP_START(rowtime, INTERVAL '2' SECOND, INTERVAL '10' SECOND), COUNT(*) "
        "FROM {t} GROUP BY customerId, HOP(rowtime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
    ),
    "session": (
        "customerId INT, window_start TIMESTAMP(3), n BIGINT",
        "SELECT customerId, SESSION_START(rowtime, INTERVAL '10' SECOND), COUNT(*) "
        "FROM {t} GROUP BY customerId, SESSION(rowtime, INTERVAL '10' SECOND)",
    ),
}
run_id = 0


def run(name, file):
    global run_id
    run_id += 1
    t, s = f"tx{run_id}", f"sink{run_id}"
    env.execute_sql(
        f"CREATE TEMPORARY TABLE {t} (customerId INT, transactionSum DOUBLE, vendorId STRING, ts BIGINT, "
        f"rowtime AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '5' SECOND) "
        f"WITH ('connector' = 'filesystem', 'path' = '{file}', 'format' = 'json')"
    )
    cols, select = QUERIES[name]
    env.execute_sql(f"CREATE TEMPORARY TABLE {s} ({cols}) WITH ('connector' = 'blackhole')")
    c0, t0 = jvm_cpu(), time.time()
    env.execute_sql(f"INSERT INTO {s} " + select.format(t=t)).wait()
    return jvm_cpu() - c0, time.time() - t0


# The JVM's first job pays for class loading and JIT: not measured.
run("tumble", small)
for name in QUERIES:
    cs, ws = run(name, small)
    cl, wl = run(name, path)
    extra = n - small_n
    print(
        "flink %-8s %9d events  %6.2f CPU-s  %6.2f s wall  %9.0f events/CPU-s  %9.0f events/s  steady (%d minus %d events): %9.0f events/CPU-s"
        % (name, n, cl, wl, n / cl, n / wl, n, small_n, extra / max(cl - cs, 1e-9)),
        flush=True,
    )
os.remove(small)
