"""Writes N transaction events as JSON lines (the seed's shape): 500
customers, 20 ms of event time per event, out of order by up to 4 s.
Deterministic (seeded), so Weir and Flink read the same events.

    python3 scripts/stream_events.py N > events.jsonl
"""
import random
import sys

n = int(sys.argv[1])
rng = random.Random(1729)
base = 1_700_000_000_000
out = sys.stdout
for i in range(n):
    ts = base + i * 20 - rng.randrange(0, 4000)
    out.write(
        '{"customerId": %d, "transactionSum": %.1f, "vendorId": "v%d", "ts": %d}\n'
        % (rng.randrange(500), rng.randrange(1, 2000) / 10, rng.randrange(10), ts)
    )
