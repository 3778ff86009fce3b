#!/usr/bin/env bash
# Measures two checkouts side by side in one run: the queue, webhook ingest and
# webhook → in_progress benches of BEFORE (another checkout of this repository, e.g. a
# `git worktree add` of an earlier commit) and of this checkout, alternately, ROUNDS times
# each (default 2), on the same machine and the same PostgreSQL server.
#   bash bench/compare.sh /path/to/before-checkout
# Logs go to bench/out/compare/NAME-{before,after}-ROUND.log.
set -euo pipefail
cd "$(dirname "$0")/.."
AFTER=$(pwd)
BEFORE=$(cd "${1:?usage: bench/compare.sh BEFORE_CHECKOUT}" && pwd)
ROUNDS=${BENCH_ROUNDS:-2}
OUT=$AFTER/bench/out/compare
mkdir -p "$OUT"
export CARGO_TERM_COLOR=never PGSSLMODE=${PGSSLMODE:-disable}
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export BENCH_INGEST_CLIENTS=${BENCH_INGEST_CLIENTS:-light}

declare -A EXE
build() {
    local side=$1 dir=$2 listing
    (cd "$dir" && cargo build --release --locked --bin deploybot >&2)
    listing=$(cd "$dir" && cargo bench --locked --no-run --message-format=json \
        --bench queue --bench ingest --bench in_progress |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null
                      and (.target.kind | index("bench"))) | "\(.target.name)\t\(.executable)"')
    while IFS=$'\t' read -r name exe; do
        EXE[$side-$name]=$exe
    done <<<"$listing"
}
build before "$BEFORE"
build after "$AFTER"

for round in $(seq 1 "$ROUNDS"); do
    for name in queue ingest in_progress; do
        for side in before after; do
            dir=$BEFORE
            [ "$side" = after ] && dir=$AFTER
            echo "==> round $round: $name ($side) $(cut -d' ' -f1-3 /proc/loadavg)" >&2
            (cd "$dir" && BENCH_OUT="$OUT/$name-$side-$round" "${EXE[$side-$name]}" --bench) \
                >"$OUT/$name-$side-$round.log" 2>&1 ||
                echo "$name ($side, round $round) FAILED: see $OUT/$name-$side-$round.log" >&2
        done
    done
done
echo "logs: $OUT" >&2
