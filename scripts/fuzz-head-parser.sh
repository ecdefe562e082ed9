#!/usr/bin/env bash
# Builds the HTTP/1 head parser's libFuzzer target and runs it for a bounded time.
# Usage: scripts/fuzz-head-parser.sh [SECONDS]   (default 30; `make fuzz FUZZ_SECONDS=120`)
# The parser files depend on the standard library only, so they compile without the package.
# Crashes are written to .build-fuzz/crashes/; new inputs go to .build-fuzz/corpus/ (the seeds in
# Fuzz/corpus/ are read, never written).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
out=.build-fuzz
mkdir -p "$out/corpus" "$out/crashes"
sources=()
for file in Sources/FerryProxy/HTTP1Head*.swift; do
    # The ByteBuffer extension imports NIOCore and is not part of the standalone build.
    [[ "$file" == *+ByteBuffer.swift ]] || sources+=("$file")
done
if ! swiftc -sanitize=fuzzer,address -parse-as-library -O "${sources[@]}" Fuzz/HeadParserFuzz.swift \
    -o "$out/head-parser-fuzz"; then
    echo "error: swiftc -sanitize=fuzzer,address failed: this toolchain lacks libFuzzer" \
        "(it ships with the swift.org Linux toolchains; on macOS use a swift.org toolchain, not Xcode's)" >&2
    exit 2
fi
# SWIFT_BACKTRACE: the runtime's backtracer can hang on a crash under libFuzzer; libFuzzer reports.
SWIFT_BACKTRACE=enable=no exec "$out/head-parser-fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -dict=Fuzz/head-parser.dict -artifact_prefix="$out/crashes/" -print_final_stats=1 "$out/corpus" Fuzz/corpus
