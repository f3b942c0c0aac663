#!/usr/bin/env bash
# A/B of the monitoring port's cost on publishing: core pub->sub (128 B, one
# publisher, one subscriber, 2 shards) at saturation and at a fixed rate
# (latency), for
#   old   a binary from before monitoring (OLD=path; skipped when unset),
#   new   this tree's binary, monitoring on, nobody polling,
#   poll  this tree's binary with a client polling /varz and /connz 10 times a second.
# Rounds alternate the variants. Writes one JSON per run and summary.tsv
# (msgs/s, p99 µs, server CPU µs per message) into OUT.
#
#   OLD=/tmp/old/jetcore scripts/monitor-ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${NEW:-target/release/jetcore}
OLD=${OLD:-}
BENCH=${BENCH:-target/release/jetcore-bench}
OUT=${OUT:-perf/results/monitoring}
ROUNDS=${ROUNDS:-3}
MSGS=${MSGS:-2000000}
RATE=${RATE:-200000}
SHARDS=${SHARDS:-2}
PORT=14555
HTTP=18555
mkdir -p "$OUT"
echo -e "variant\tmode\tround\tmsgs_per_sec\tp99_us\tcpu_us_per_msg" >"$OUT/summary.tsv"

cpu_secs() { # utime + stime of a process, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); print (f[12] + f[13]) / hz }' "/proc/$1/stat"
}

run() {
    local variant=$1 mode=$2 round=$3 bin=$NEW args=(-m "$HTTP") poller=""
    [[ $variant == old ]] && bin=$OLD && args=()
    "$bin" -a 127.0.0.1 -p "$PORT" --shards "$SHARDS" "${args[@]}" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
    if [[ $variant == poll ]]; then
        # One keep-alive connection, as an exporter polls (not a process per request).
        python3 - "$HTTP" <<'PY' &
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
while True:
    for path in ("/varz", "/connz?subs=1"):
        c.request("GET", path)
        c.getresponse().read()
    time.sleep(0.1)
PY
        poller=$!
    fi
    local extra=() json="$OUT/$variant-$mode-$round.json"
    [[ $mode == rate ]] && extra=(--rate "$RATE")
    local c0 c1
    c0=$(cpu_secs "$pid")
    "$BENCH" pubsub --server "127.0.0.1:$PORT" --msgs "$MSGS" --size 128 "${extra[@]}" --json "$json" >/dev/null
    c1=$(cpu_secs "$pid")
    [[ -n $poller ]] && kill "$poller" && wait "$poller" 2>/dev/null || true
    kill "$pid" && wait "$pid" 2>/dev/null || true
    python3 - "$json" "$variant" "$mode" "$round" "$c0" "$c1" "$MSGS" >>"$OUT/summary.tsv" <<'EOF'
import json, sys
path, variant, mode, rnd, c0, c1, msgs = sys.argv[1:]
s = json.load(open(path))
s = s.get("summary", s)
cpu = (float(c1) - float(c0)) * 1e6 / int(msgs)
print(f"{variant}\t{mode}\t{rnd}\t{s['msgs_per_sec']:.0f}\t{s['latency']['p99_us']:.0f}\t{cpu:.3f}")
EOF
}

variants=(new poll)
[[ -n $OLD ]] && variants=(old new poll)
for r in $(seq "$ROUNDS"); do
    for mode in sat rate; do
        for v in "${variants[@]}"; do
            run "$v" "$mode" "$r"
        done
    done
done
column -t "$OUT/summary.tsv"
