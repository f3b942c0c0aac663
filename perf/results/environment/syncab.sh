#!/bin/bash
# syncab.sh ROUNDS MSGS : nats-server vs jetcore with the stream on shard 0 and on shard 1, both placements
R=$1; MSGS=$2; BIN=${BIN:-/tmp/p/jetcore-head}; B=/work/main/target/release/jetcore-bench
one() { # name cmd... ; env N=dummies PL=placement
  D=$(mktemp -d /tmp/p/sd.XXXX)
  if [ $1 = nats ]; then nats-server -js -sd $D -p 4431 >/dev/null 2>&1 & P=$!; X=""; else $BIN -p 4431 --store_dir $D -js --shards 2 >/dev/null 2>&1 & P=$!; X="--placement $PL --shards 2"; fi
  sleep 0.6
  for i in $(seq 1 $N); do $B js pub -s 127.0.0.1:4431 --stream D$i --msgs 1 --keep d$i >/dev/null 2>&1; done
  t0=$(awk '{print $14+$15}' /proc/$P/stat)
  o=$($B js pub -s 127.0.0.1:4431 --size 128 --msgs $MSGS --window 1 $X 2>&1 | grep -A1 "Pub stats" | tr '\n' ' ')
  t1=$(awk '{print $14+$15}' /proc/$P/stat)
  kill $P; wait $P 2>/dev/null; rm -rf $D
  echo "$1 $o" | sed -E 's/.*Pub stats: ([0-9,]+) msgs.*p50 ([0-9.]+) \| p90 [0-9.]+ \| p99 ([0-9.]+).*/\1 p50 \2 p99 \3/' | tr -d '\n'
  echo " cpu_us=$(echo "scale=1; ($t1-$t0)*10000/$MSGS" | bc)"
}
for r in $(seq 1 $R); do
  echo -n "nats         : "; N=0 one nats
  echo -n "shard0 same  : "; N=0 PL=same one j
  echo -n "shard0 cross : "; N=0 PL=cross one j
  echo -n "shard1 same  : "; N=1 PL=same one j
  echo -n "shard1 cross : "; N=1 PL=cross one j
done
