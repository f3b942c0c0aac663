#!/bin/bash
nats-server -p 4445 --tls --tlscert /tmp/tlsm/cert.pem --tlskey /tmp/tlsm/key.pem > /tmp/tlsm/nserver.log 2>&1 &
PID=$!; sleep 0.7
REAL=$(pgrep -f "nats-server -p 4445" | tail -1)
T0=$(awk '{print $14+$15}' /proc/$REAL/stat)
OUT=$(/work/main/target/release/jetcore-bench request -s tls://127.0.0.1:4445 --msgs 20000 2>&1)
T1=$(awk '{print $14+$15}' /proc/$REAL/stat)
RATE=$(echo "$OUT" | grep -oE "[0-9,]+ msgs/sec" | head -1 | tr -d ',' | cut -d' ' -f1)
P50=$(echo "$OUT" | grep -oE "p50 [0-9.]+" | head -1)
echo "nats-server rate=$RATE cpu_us_per_rt=$(( (T1-T0)*10000/20000 )) $P50"
kill $REAL $PID 2>/dev/null; wait 2>/dev/null
