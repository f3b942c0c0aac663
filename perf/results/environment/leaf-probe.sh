#!/bin/bash
# leaf-probe.sh MODE jetcore|nats: one saturated 128 B pub->sub run from a client on a
# leaf (jetcore or nats-server) to a subscriber on a nats-server hub, looked at by MODE:
#   reads   the hub's read and write syscalls (perf stat)
#   queues  socket queues mid-run (ss, 5 samples 0.2 s apart)
#   sched   perf sched record for 0.5 s mid-run (then perf sched latency -i sched.data)
#   cpu     each process's CPU and the machine's idle time over the run
#   prof    perf record of the leaf (then perf report -i perf.leaf.data)
# Env: BIN (jetcore binary), PL (same|cross: the publisher on the leaf connection's
# shard or not), SH (shards, 2), MSGS (2000000), BENCH (jetcore-bench).
# hub.conf:  server_name: hub; listen: 127.0.0.1:14701; leafnodes { listen: "127.0.0.1:14702" }
# leaf.conf: server_name: edge; listen: 127.0.0.1:14703
#            leafnodes { remotes: [ { url: "nats://127.0.0.1:14702", compression: off } ] }
set -u
MODE=$1; LEAF=$2
BIN=${BIN:-target/release/jetcore}; BENCH=${BENCH:-target/release/jetcore-bench}
SH=${SH:-2}; MSGS=${MSGS:-2000000}; W=$(mktemp -d)
printf 'server_name: hub\nlisten: 127.0.0.1:14701\nleafnodes { listen: "127.0.0.1:14702" }\n' > $W/hub.conf
printf 'server_name: edge\nlisten: 127.0.0.1:14703\nleafnodes { remotes: [ { url: "nats://127.0.0.1:14702", compression: off } ] }\n' > $W/leaf.conf
nats-server -c $W/hub.conf > $W/hub.log 2>&1 & HUB=$!
sleep 0.5
if [ "$LEAF" = jetcore ]; then
  $BIN -c $W/leaf.conf --shards $SH > $W/leaf.log 2>&1 & L=$!
  ARGS="--placement ${PL:-same} --shards $SH"
else
  nats-server -c $W/leaf.conf > $W/leaf.log 2>&1 & L=$!
  ARGS=""
fi
for _ in $(seq 100); do grep -q "Leafnode connection created" $W/leaf.log && break; sleep 0.05; done
sleep 0.3
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
case $MODE in
  reads) perf stat -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev -p $HUB -o $W/stat 2>/dev/null & P=$!; sleep 0.2 ;;
  prof) [ "$LEAF" = jetcore ] && { perf record -e cpu-clock -F 4000 -g -p $L -o perf.leaf.data 2>/dev/null & P=$!; sleep 0.2; } ;;
esac
h0=$(cpu $HUB); l0=$(cpu $L); read -ra s0 < <(grep '^cpu ' /proc/stat)
$BENCH pubsub -s 127.0.0.1:14703 --sub-server 127.0.0.1:14701 --msgs $MSGS --size 128 $ARGS leaf.bench > $W/out.txt 2>&1 &
B=$!
case $MODE in
  queues) sleep 0.8; for _ in 1 2 3 4 5; do
      ss -tnH state established '( sport = :14701 or dport = :14701 or sport = :14702 or dport = :14702 or sport = :14703 or dport = :14703 )' \
        | awk '{printf "%s>%s recv-q=%s send-q=%s | ", $3, $4, $1, $2}'; echo; sleep 0.2; done ;;
  sched) sleep 0.8; perf sched record -q -o sched.data -- sleep 0.5 > /dev/null 2>&1 ;;
esac
wait $B
h1=$(cpu $HUB); l1=$(cpu $L); read -ra s1 < <(grep '^cpu ' /proc/stat)
grep "Sub stats" $W/out.txt
case $MODE in
  reads|prof) [ -n "${P:-}" ] && { kill -INT $P; wait $P; }; [ -f $W/stat ] && grep sys_enter $W/stat ;;
  cpu) echo "hub=$((h1-h0)) leaf=$((l1-l0)) ticks; machine: user=$((s1[1]-s0[1])) sys=$((s1[3]-s0[3])) idle=$((s1[4]-s0[4])) iowait=$((s1[5]-s0[5])) softirq=$((s1[7]-s0[7]))" ;;
esac
kill $L $HUB; wait 2>/dev/null; rm -rf $W
