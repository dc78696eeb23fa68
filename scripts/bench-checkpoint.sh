#!/bin/bash
# A job holding a large state (COUNT(DISTINCT) of N distinct ~1 KB values
# in one hour-long window): how much its idle node writes and spends on
# checkpoints over 30 s once caught up, its peak RSS, and the time from a
# kill -9 and restart until it runs and is caught up again.
# usage: scripts/bench-checkpoint.sh BIN N LABEL   (data under /tmp/ckbench/d-LABEL)
set -u
BIN=$1; N=$2; LABEL=$3; D=/tmp/ckbench/d-$LABEL; P=39611; A=39612
rm -rf $D; mkdir -p $D
WEIR_LOG=info,weir_broker::stream=debug $BIN broker --data-dir $D/data --listen 127.0.0.1:$P --admin-listen 127.0.0.1:$A > $D/log 2>&1 &
PID=$!
for i in $(seq 1 50); do curl -s 127.0.0.1:$A/v1/health >/dev/null && break; sleep 0.1; done
$BIN topic create input -p 1 --bootstrap 127.0.0.1:$P >/dev/null
$BIN job create big --sql "INSERT INTO out SELECT k, TUMBLE_START(ts, INTERVAL '1' HOUR) AS window_start, COUNT(DISTINCT v) AS d, COUNT(*) AS n FROM input GROUP BY k, TUMBLE(ts, INTERVAL '1' HOUR)" --admin 127.0.0.1:$A >/dev/null
python3 -c "
pad='x'*1000
for i in range($N): print('{\"k\": %d, \"v\": \"%07d%s\", \"ts\": %d}' % (i%10, i, pad, 1000+i))" > $D/in.txt
$BIN produce input --bootstrap 127.0.0.1:$P < $D/in.txt >/dev/null
# caught up: the job's group committed N
for i in $(seq 1 600); do
  c=$($BIN group describe weir-job-big --bootstrap 127.0.0.1:$P 2>/dev/null | awk '$1=="input" {s+=$3} END {print s+0}')
  [ "$c" = "$N" ] && break; sleep 0.5; done
echo "$LABEL committed=$c"
sleep 3
size() { du -sb $D/data/logs/__weir_job_state-0 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
s0=$(size); c0=$(cpu); sleep 30; s1=$(size); c1=$(cpu)
echo "$LABEL idle 30s: state topic +$(( (s1-s0)/1000000 )) MB on disk, CPU $(( (c1-c0) / 3 ))‰ of a core, VmHWM $(grep VmHWM /proc/$PID/status | awk '{print $2/1024 " MB"}')"
sed 's/\x1b\[[0-9;]*m//g' $D/log | grep -o 'cost_ms=[0-9]*' | tail -5 | tr '\n' ' '; echo
# restart: time until caught up again
kill -9 $PID; sleep 0.5
t0=$(date +%s.%N)
WEIR_LOG=info,weir_broker::stream=debug $BIN broker --data-dir $D/data --listen 127.0.0.1:$P --admin-listen 127.0.0.1:$A >> $D/log 2>&1 &
PID=$!
for i in $(seq 1 600); do
  st=$(curl -s 127.0.0.1:$A/v1/jobs/big | python3 -c "import sys,json; j=json.load(sys.stdin)['status']; print(j['state'], j['caught_up'])" 2>/dev/null)
  [ "$st" = "running True" ] && break; sleep 0.2; done
t1=$(date +%s.%N)
echo "$LABEL restart to running+caught_up: $(python3 -c "print(round($t1-$t0,1))") s, VmHWM $(grep VmHWM /proc/$PID/status | awk '{print $2/1024 " MB"}')"
kill $PID; wait 2>/dev/null
