#!/usr/bin/env bash
# `make bench`: release build of Ferry, then the side-by-side run (see bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release
exec python3 Benchmarks/bench.py "$@"
