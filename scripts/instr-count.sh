#!/usr/bin/env bash
# Instructions a server executes per message, counted by callgrind: unlike
# CPU time on this shared machine, the same binary and load give the same
# count run after run, so two builds can be compared to a percent.
#
#   scripts/instr-count.sh <jetcore binary> <kvput|ordered> <tag> [messages]
#
# kvput: `jetcore-bench kv put` over 1000 keys (history 1), counted after a
# warm-up of 20 000 puts. ordered: an ordered consumer replaying a stream of
# <messages> 128-byte messages in 4 MiB segments (most of them sealed, their
# index entries in index files), counted from the replay's start. The
# profile lands in /tmp/instr-<tag>.out; compare two with
# `scripts/callgrind-diff.py /tmp/instr-<a>.out /tmp/instr-<b>.out <messages>`.
# Needs valgrind; the server runs on 127.0.0.1:24555 with one shard.
set -euo pipefail
bin=$1 mode=$2 tag=$3 n=${4:-200000}
bench="$(dirname "$0")/../target/release/jetcore-bench"
store=/tmp/instr-store-$tag out=/tmp/instr-$tag.out addr=127.0.0.1:24555
rm -rf "$store" "$out"*
seg=()
[ "$mode" = ordered ] && seg=(--segment_bytes 4194304)
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --shards 1 -js -sd "$store" \
  -p 24555 "${seg[@]}" >"/tmp/instr-$tag.log" 2>&1 &
vg=$!
trap 'kill -9 $vg 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/24555) 2>/dev/null && break; sleep 0.2; done
# Under valgrind the first stream create can outlast the client's API
# timeout; a later run finds the stream there (--keep). Tried until one
# works (a binary before e9c602a could answer an early retry with 404).
warm() { for _ in 1 2 3 4 5; do "$bench" "$@" >/dev/null 2>&1 && return; sleep 5; done; }
case $mode in
  kvput)
    warm kv put --server $addr --msgs 1000 --keep
    "$bench" kv put --server $addr --msgs 20000 --keep --duration 600s >/dev/null
    callgrind_control -z "$vg" >/dev/null
    "$bench" kv put --server $addr --msgs "$n" --keep --duration 600s | grep "Pub stats"
    ;;
  ordered)
    warm js pub --server $addr --msgs 1000 --keep
    "$bench" js pub --server $addr --msgs "$n" --keep --duration 600s | grep "Pub stats"
    sleep 15 # the last sealed segments' index files written and gone cold
    callgrind_control -z "$vg" >/dev/null
    "$bench" js consume --mode ordered --no-preload --server $addr --msgs "$n" \
      --duration 600s | grep "Sub stats"
    ;;
  *) echo "mode: kvput or ordered" >&2; exit 2 ;;
esac
callgrind_control -d "$vg" >/dev/null
sleep 1
ls "$out".*
