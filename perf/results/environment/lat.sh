#!/bin/bash
# lat.sh BIN PL [perfsched]
BIN=$1; PL=$2
D=$(mktemp -d /tmp/p/sd.XXXX)
$BIN -p 4432 --store_dir $D -js --shards 2 >/tmp/p/srv.log 2>&1 & P=$!
sleep 0.5
if [ -n "$3" ]; then perf sched record -q -o /tmp/p/lat.sched -- sleep 5.5 >/dev/null 2>&1 & PP=$!; sleep 0.3; fi
/work/main/target/release/jetcore-bench pubsub -s 127.0.0.1:4432 --size 16 --rate 10000 --msgs 50000 --placement $PL --shards 2 x 2>&1 | grep -E "p50" | head -2
[ -n "$3" ] && wait $PP
echo "pid=$P"
kill $P; wait $P 2>/dev/null; rm -rf $D
