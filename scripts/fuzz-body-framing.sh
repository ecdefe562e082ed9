#!/usr/bin/env bash
# Builds BodyFramingTracker's libFuzzer target and runs it for a bounded time.
# Usage: scripts/fuzz-body-framing.sh [SECONDS]   (default 30; `make fuzz FUZZ_SECONDS=120` runs
# this and scripts/fuzz-head-parser.sh)
# The tracker depends on the standard library and HTTP1HeadParser.isToken only, so it compiles
# with the head parser's files without the package. Crashes are written to
# .build-fuzz/crashes/body-*; new inputs go to .build-fuzz/body-corpus/ (the seeds in
# Fuzz/body-corpus/ are read, never written).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
out=.build-fuzz
mkdir -p "$out/body-corpus" "$out/crashes"
sources=(Sources/FerryProxy/BodyFramingTracker.swift)
for file in Sources/FerryProxy/HTTP1Head*.swift; do
    # The ByteBuffer extension imports NIOCore and is not part of the standalone build.
    [[ "$file" == *+ByteBuffer.swift ]] || sources+=("$file")
done
if ! swiftc -sanitize=fuzzer,address -parse-as-library -O "${sources[@]}" Fuzz/BodyFramingFuzz.swift \
    -o "$out/body-framing-fuzz"; then
    echo "error: swiftc -sanitize=fuzzer,address failed: this toolchain lacks libFuzzer" \
        "(it ships with the swift.org Linux toolchains; on macOS use a swift.org toolchain, not Xcode's)" >&2
    exit 2
fi
# SWIFT_BACKTRACE: the runtime's backtracer can hang on a crash under libFuzzer; libFuzzer reports.
SWIFT_BACKTRACE=enable=no exec "$out/body-framing-fuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
    -dict=Fuzz/body-framing.dict -artifact_prefix="$out/crashes/body-" -print_final_stats=1 \
    "$out/body-corpus" Fuzz/body-corpus
