#!/bin/sh
# Runs one fuzz target with the flags of fuzz/README.md:
#   fuzz/scripts/run.sh TARGET [SECONDS]            (default 600; from any directory)
#   KEEP_GOING=1 fuzz/scripts/run.sh TARGET [SECONDS]
# The grown corpus goes to fuzz/corpus/TARGET (seeds are read from fuzz/seeds/TARGET),
# crashes to fuzz/artifacts/TARGET, libFuzzer's log to fuzz/logs/TARGET/.
# Default: -jobs=1 -workers=1 (one fuzzing process, which stops at the first
# crash; log in fuzz-0.log). KEEP_GOING=1: -fork=1 -ignore_crashes=1 (still one
# process at a time, restarted after each crash, every crash saved; log in fork.log),
# for a target with a known crash.
set -eu
T=$1
SECONDS_TOTAL=${2:-600}
FUZZ=$(cd "$(dirname "$0")/.." && pwd)
case $T in
  request_frame | client_response) MAXLEN=1048576 ;;   # 1 MiB frames
  batch_append) MAXLEN=1048577 ;;                      # flag byte + max.message.bytes
  segment_recovery) MAXLEN=262144 ;;                   # 256 KiB of segment files
  *) echo "unknown target $T" >&2; exit 2 ;;
esac
mkdir -p "$FUZZ/corpus/$T" "$FUZZ/logs/$T"
cd "$FUZZ/logs/$T"
run() {
  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir "$FUZZ" "$T" "$FUZZ/corpus/$T" "$FUZZ/seeds/$T" -- \
    -max_total_time="$SECONDS_TOTAL" -rss_limit_mb=2048 -max_len="$MAXLEN" -timeout=10 "$@"
}
if [ "${KEEP_GOING:-0}" = 1 ]; then
  run -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 > fork.log 2>&1 || true
  grep -E '^#[0-9]+: cov' fork.log | tail -n 1
  grep -E 'CRASH|TIMEOUT|OOM|artifact_prefix.*Test unit written' fork.log | sort | uniq -c | head -n 20
else
  # libFuzzer writes the job's output to fuzz-0.log in the current directory.
  run -jobs=1 -workers=1
  tail -n 5 fuzz-0.log
fi
