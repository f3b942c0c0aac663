#!/bin/bash
# run.sh BIN EXTRA PLACEMENT -> round trips/s, server CPU us per round trip
BIN=$1; EXTRA=$2; PL=$3
$BIN --shards 2 -p 4444 --tls --tlscert /tmp/tlsm/cert.pem --tlskey /tmp/tlsm/key.pem $EXTRA > /tmp/tlsm/server.log 2>&1 &
PID=$!; sleep 0.5
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
OUT=$(/work/main/target/release/jetcore-bench request -s tls://127.0.0.1:4444 --msgs 20000 --placement $PL --shards 2 2>&1)
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
RATE=$(echo "$OUT" | grep -oE "[0-9,]+ msgs/sec" | head -1 | tr -d ',' | cut -d' ' -f1)
P50=$(echo "$OUT" | grep -oE "p50 [0-9.]+" | head -1)
echo "$(basename $BIN) $EXTRA $PL rate=$RATE cpu_us_per_rt=$(( (T1-T0)*10000*1000/20000 /1000 )) $P50"
kill $PID; wait $PID 2>/dev/null
