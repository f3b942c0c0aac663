#!/usr/bin/env bash
# Messages from a client on a leaf node to a subscriber (or responder) on its
# nats-server hub, through a jetcore leaf and through a nats-server leaf,
# alternately, in one run on one machine (issue 18's measurement):
#   pubsub   saturating core pub -> sub, 128 B
#   rate10k  core pub -> sub at 10,000 msgs/s (latency)
#   reqrep   one request at a time (nats.go's pattern), responder on the hub
# jetcore runs with PLACEMENT (same: the publisher on the shard holding the
# leaf connection; cross: on the other one; default: where the kernel puts it).
# Leaf server CPU per message comes from /proc (utime + stime). Writes one
# JSON per run and summary.tsv into OUT. PIN=1 pins the load generator's
# executors (`--pin-workers`; by default the kernel places them).
#
#   ROUNDS=3 PLACEMENT=cross scripts/leaf-ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JETCORE=${JETCORE:-target/release/jetcore}
BENCH=${BENCH:-target/release/jetcore-bench}
OUT=${OUT:-perf/results/leaf}
ROUNDS=${ROUNDS:-3}
MSGS=${MSGS:-2000000}
SHARDS=${SHARDS:-2}
PLACEMENT=${PLACEMENT:-}
SCENARIOS=${SCENARIOS:-pubsub rate10k reqrep}
HUB=14701
HUB_LEAF=14702
LEAF=14703
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); print (f[12] + f[13]) / hz }' "/proc/$1/stat"
}
wait_port() {
    for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done
    echo "port $1 never opened" >&2
    exit 1
}

cat >"$WORK/hub.conf" <<EOF
server_name: hub
listen: 127.0.0.1:$HUB
leafnodes { listen: "127.0.0.1:$HUB_LEAF" }
EOF
cat >"$WORK/leaf.conf" <<EOF
server_name: edge
listen: 127.0.0.1:$LEAF
leafnodes { remotes: [ { url: "nats://127.0.0.1:$HUB_LEAF", compression: off } ] }
EOF
nats-server -c "$WORK/hub.conf" >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
wait_port $HUB
echo -e "leaf\tscenario\tround\tmsgs_per_sec\tp50_us\tp99_us\tleaf_cpu_us_per_msg\thub_cpu_us_per_msg" >"$OUT/summary.tsv"

run() {
    local leaf=$1 scenario=$2 round=$3 pid args=()
    if [[ $leaf == jetcore ]]; then
        "$JETCORE" -c "$WORK/leaf.conf" --shards "$SHARDS" >"$WORK/leaf.log" 2>&1 &
        pid=$!
        [[ -n $PLACEMENT ]] && args=(--placement "$PLACEMENT" --shards "$SHARDS")
    else
        nats-server -c "$WORK/leaf.conf" >"$WORK/leaf.log" 2>&1 &
        pid=$!
    fi
    wait_port $LEAF
    for _ in $(seq 100); do grep -q "Leafnode connection created" "$WORK/leaf.log" && break; sleep 0.05; done
    [[ ${PIN:-0} == 1 ]] && args+=(--pin-workers)
    local json="$OUT/$leaf-$scenario-$round.json" c0 c1 h0 h1 msgs
    c0=$(cpu_secs "$pid")
    h0=$(cpu_secs "$HUB_PID")
    case $scenario in
    pubsub)
        msgs=$MSGS
        "$BENCH" pubsub -s "127.0.0.1:$LEAF" --sub-server "127.0.0.1:$HUB" --msgs "$msgs" \
            --size 128 "${args[@]}" --json "$json" leaf.bench >/dev/null
        ;;
    rate10k)
        msgs=100000
        "$BENCH" pubsub -s "127.0.0.1:$LEAF" --sub-server "127.0.0.1:$HUB" --msgs "$msgs" \
            --size 128 --rate 10000 "${args[@]}" --json "$json" leaf.rate >/dev/null
        ;;
    reqrep)
        msgs=20000
        "$BENCH" request -s "127.0.0.1:$LEAF" --sub-server "127.0.0.1:$HUB" --msgs "$msgs" \
            --size 128 "${args[@]}" --json "$json" leaf.svc >/dev/null
        ;;
    esac
    c1=$(cpu_secs "$pid")
    h1=$(cpu_secs "$HUB_PID")
    kill "$pid" && wait "$pid" 2>/dev/null || true
    python3 - "$json" "$leaf" "$scenario" "$round" "$c0" "$c1" "$h0" "$h1" "$msgs" >>"$OUT/summary.tsv" <<'EOF'
import json, sys
path, leaf, scenario, rnd, c0, c1, h0, h1, msgs = sys.argv[1:]
s = json.load(open(path))
lat = s.get("latency") or {}
cpu = (float(c1) - float(c0)) * 1e6 / int(msgs)
hub = (float(h1) - float(h0)) * 1e6 / int(msgs)
print(f"{leaf}\t{scenario}\t{rnd}\t{s['msgs_per_sec']:.0f}\t{lat.get('p50_us', 0):.1f}"
      f"\t{lat.get('p99_us', 0):.1f}\t{cpu:.3f}\t{hub:.3f}")
EOF
}

for r in $(seq "$ROUNDS"); do
    for sc in $SCENARIOS; do
        for leaf in jetcore nats-server; do
            run "$leaf" "$sc" "$r"
        done
    done
done
column -t "$OUT/summary.tsv"
