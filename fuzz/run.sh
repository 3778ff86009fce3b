#!/usr/bin/env bash
# Fuzzes every target for a bounded time with libFuzzer through cargo-fuzz, on stable Rust:
# `--sanitizer none` is the only cargo-fuzz mode that needs no `-Z` flag (the coverage
# instrumentation it adds, `-Cpasses=sancov-module` and `-Cllvm-args=…`, is stable), so no
# nightly and no RUSTC_BOOTSTRAP. Safe Rust needs no AddressSanitizer to find what matters
# here: panics, overflow (checks are on), unbounded recursion, hangs and runaway memory.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 12 s each, all targets)
# Exits non-zero when a target crashes, hangs (10 s per input) or passes 2 GiB; the input
# is saved under fuzz/artifacts/TARGET/ and printed. Seeds stay in fuzz/corpus/TARGET/;
# what a run discovers goes to a temporary directory, so the repository does not grow.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-12}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(signature events command config cursor)
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# The fuzzed crate gets exactly the dependency versions it ships with; cargo only adds the
# fuzzer's own (libfuzzer-sys, arbitrary).
cp ../Cargo.lock Cargo.lock

# Release with debug assertions and overflow checks (fuzz/Cargo.toml).
build=(--sanitizer none)
cargo fuzz build "${build[@]}"

failed=()
for target in "${targets[@]}"; do
    work=$(mktemp -d)
    echo "=== fuzz $target for ${seconds}s"
    # The first corpus directory receives new inputs: the temporary one.
    if cargo fuzz run "${build[@]}" "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 2>"$work.log"; then
        grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$work.log" |
            sed "s/^/$target /"
    else
        failed+=("$target")
        tail -n 60 "$work.log"
        for artifact in artifacts/"$target"/*; do
            [ -f "$artifact" ] || continue
            echo "--- $artifact (base64):"
            base64 -w0 "$artifact"
            echo
        done
    fi
    rm -rf "$work" "$work.log"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"
