#!/usr/bin/env bash
# The disk's own limits for the access patterns of storage/benches/log.rs, measured
# with fio on the same filesystem (by default <workspace>/target/fio, beside the
# bench logs in <workspace>/target/bench-logs). Prints one table row per job.
#
#   storage/benches/fio.sh                 # defaults below
#   FIO_DIR=/data FIO_SIZE=256M FIO_RUNTIME=5 FIO_REPEAT=5 storage/benches/fio.sh
#
# Jobs (every write job starts from a deleted file and uses --fallocate=none, so each
# write extends the file, as an append to the active segment does):
#   buffered      --rw=write --ioengine=psync, no fsync at all        ~ Durability::PageCache
#   buffered+end  the same with --end_fsync=1 (1m only): the disk's sustained write rate
#   fdatasync     --rw=write --fdatasync=1 (one fdatasync per write)  ~ Durability::EveryAppend
#   fdatasync/8   --rw=write --fdatasync=8: one fdatasync per 8 writes, the best a
#                 group commit of 8 appenders can do  ~ GroupCommit, 8 appenders
#   read          --rw=read --bs=1m --invalidate=0 on a file just written (page cache
#                 warm), time-based so it loops over the file         ~ Log::read walk
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DIR=${FIO_DIR:-$here/../../target/fio}
SIZE=${FIO_SIZE:-512M}
RUNTIME=${FIO_RUNTIME:-10}
REPEAT=${FIO_REPEAT:-3}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
FILE=$DIR/fio.dat

command -v fio >/dev/null || { echo "fio not found (apt-get install -y fio)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq not found (apt-get install -y jq)" >&2; exit 1; }

# run <label> <rw key in the json: write|read> <fio args...>
# Runs the job REPEAT times (each write job on a deleted file) and prints the run
# with the median MiB/s.
run() {
  local label=$1 dir=$2
  shift 2
  local rows=() i out
  for ((i = 0; i < REPEAT; i++)); do
    [[ $dir == write ]] && rm -f "$FILE"
    out=$(fio --name=weir --filename="$FILE" --size="$SIZE" --runtime="$RUNTIME" \
      --ioengine=psync --fallocate=none --output-format=json "$@")
    rows+=("$(jq -r --arg dir "$dir" '
      .jobs[0] as $j
      | ($j[$dir].bw_bytes / 1048576) as $mibs
      | ($j.sync.lat_ns.mean // 0) as $sync
      | ($j[$dir].clat_ns.percentile["99.000000"] // 0) as $p99
      | "\($mibs * 10 | round / 10) | \($j[$dir].iops | round) | \(if $sync > 0 then ($sync / 1000 | round | tostring) else "-" end) | \($p99 / 1000 | round)"
    ' <<<"$out")")
  done
  local all median
  all=$(printf '%s\n' "${rows[@]}" | cut -d' ' -f1 | sort -n | tr '\n' ' ')
  median=$(printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
  echo "| $label | $median | ${all% } |"
}

echo "fio $(fio --version | sed 's/^fio-//') on $(df --output=source,fstype "$DIR" | tail -1 | tr -s ' ') ($DIR), size=$SIZE runtime<=${RUNTIME}s, median of $REPEAT runs per job"
echo
echo "| job | MiB/s (median of $REPEAT) | IOPS | mean fdatasync µs | p99 write/read µs | all runs MiB/s |"
echo "|---|---:|---:|---:|---:|---|"
for bs in 1k 16k 1m; do
  run "buffered write bs=$bs" write --rw=write --bs="$bs"
done
run "buffered write bs=1m + end_fsync" write --rw=write --bs=1m --end_fsync=1
for bs in 1k 16k 1m; do
  run "write + fdatasync each bs=$bs" write --rw=write --bs="$bs" --fdatasync=1
done
# What a group commit of 8 appenders could reach at best: one fdatasync per 8 writes.
for bs in 1k 16k 1m; do
  run "write + fdatasync per 8 writes bs=$bs" write --rw=write --bs="$bs" --fdatasync=8
done
# A file just written through the page cache, read back without invalidating it.
rm -f "$FILE"
fio --name=fill --filename="$FILE" --size="$SIZE" --ioengine=psync --fallocate=none \
  --rw=write --bs=1m --output=/dev/null
run "read page cache bs=1m" read --rw=read --bs=1m --invalidate=0 --time_based=1 \
  --runtime="$(( RUNTIME < 5 ? RUNTIME : 5 ))"
rm -f "$FILE"
