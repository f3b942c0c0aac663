#!/usr/bin/env bash
# A/B of security on the publish path: core pub->sub (128 B) against
#   open   jetcore without authentication or TLS,
#   perms  jetcore with 1,000 users, each with publish and subscribe
#          allow/deny lists, the load generator connecting as one of them,
#   tls    jetcore with TLS (a self-signed certificate made with openssl);
# the same for nats-server when NATS=1. VARIANTS picks some ("open tls").
# Rounds alternate. Writes one JSON per run and summary.tsv (msgs/s, server
# CPU µs per message) into OUT. PIN=1 pins the load generator's executors
# (`--pin-workers`; by default the kernel places them, as Go's runtime does).
#
#   NATS=1 SHARDS=1 ROUNDS=3 scripts/security-ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JETCORE=${JETCORE:-target/release/jetcore}
BENCH=${BENCH:-target/release/jetcore-bench}
OUT=${OUT:-perf/results/security}
VARIANTS=${VARIANTS:-open perms tls}
ROUNDS=${ROUNDS:-3}
MSGS=${MSGS:-2000000}
SHARDS=${SHARDS:-1}
PORT=14666
mkdir -p "$OUT"
mkdir -p "$OUT"
conf="$OUT/users.conf"
{
    echo "authorization { users: ["
    for i in $(seq 1000); do
        echo "  { user: u$i, password: p$i, permissions: {"
        echo "      publish: { allow: [\"bench.>\", \"u$i.>\"], deny: \"bench.secret.>\" }"
        echo "      subscribe: { allow: [\"bench.>\", \"_INBOX.>\"], deny: \"bench.secret.>\" } } }"
    done
    echo "] }"
} >"$conf"
# A throwaway certificate, kept out of the results.
CERTS=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" \
    -days 2 -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
echo -e "server\tvariant\tround\tmsgs_per_sec\tcpu_us_per_msg" >"$OUT/summary.tsv"

cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); print (f[12] + f[13]) / hz }' "/proc/$1/stat"
}

run() {
    local server=$1 variant=$2 round=$3 args=() target="127.0.0.1:$PORT"
    [[ $variant == perms ]] && args=(-c "$conf") && target="u500:p500@127.0.0.1:$PORT"
    [[ $variant == tls ]] && args=(--tls --tlscert "$CERTS/cert.pem" --tlskey "$CERTS/key.pem") &&
        target="tls://127.0.0.1:$PORT"
    if [[ $server == jetcore ]]; then
        "$JETCORE" -a 127.0.0.1 -p "$PORT" --shards "$SHARDS" "${args[@]}" >/dev/null 2>&1 &
    else
        nats-server -a 127.0.0.1 -p "$PORT" "${args[@]}" >/dev/null 2>&1 &
    fi
    local pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
    local json="$OUT/$server-$variant-$round.json" c0 c1
    c0=$(cpu_secs "$pid")
    local pin=()
    [[ ${PIN:-0} == 1 ]] && pin=(--pin-workers)
    "$BENCH" pubsub --server "$target" --msgs "$MSGS" --size 128 --json "$json" ${pin[@]+"${pin[@]}"} bench.x >/dev/null
    c1=$(cpu_secs "$pid")
    kill "$pid" && wait "$pid" 2>/dev/null || true
    python3 - "$json" "$server" "$variant" "$round" "$c0" "$c1" "$MSGS" >>"$OUT/summary.tsv" <<'EOF'
import json, sys
path, server, variant, rnd, c0, c1, msgs = sys.argv[1:]
s = json.load(open(path))
cpu = (float(c1) - float(c0)) * 1e6 / int(msgs)
print(f"{server}\t{variant}\t{rnd}\t{s['msgs_per_sec']:.0f}\t{cpu:.3f}")
EOF
}

servers=(jetcore)
[[ ${NATS:-0} == 1 ]] && servers=(jetcore nats-server)
for r in $(seq "$ROUNDS"); do
    for s in "${servers[@]}"; do
        for v in $VARIANTS; do
            run "$s" "$v" "$r"
        done
    done
done
column -t "$OUT/summary.tsv"
