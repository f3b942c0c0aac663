#!/usr/bin/env bash
# Runs jetcore (release build) with the given flags, e.g. scripts/run.sh -p 4222 --shards 2
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin jetcore
exec target/release/jetcore "$@"
