#!/usr/bin/env bash
# Runs every deploybot benchmark in one go and prints one table (also written to
# bench/results.md): queue overhead, webhook ingest against the Node.js and Python peers,
# webhook → in_progress latency, list page latency at 1M deployments (the store bench),
# and resident memory. It installs what it needs (wrk, the peers' packages), builds in
# release mode, starts and stops every server itself, and uses 127.0.0.1 only.
#
#   bench/run.sh
#
# Environment (all optional):
#   BENCH_DURATION=10  BENCH_WARMUP=3  BENCH_CONNECTIONS=32  BENCH_THREADS=2   wrk settings
#   BENCH_MAX_ROWS=1000000   the store bench's largest table (10000, 100000 or 1000000)
#   BENCH_STORE=run|reuse|skip   run the store bench (default), reuse its last results in
#                            target/criterion, or leave it out
#   TEST_DATABASE_URL        the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres);
#                            the store bench gets it as BENCH_DATABASE_URL unless that is set
#   PGSSLMODE=disable        libpq's TLS mode for it (no TLS over loopback by default)
#   BENCH_OUT=bench/out      where the raw results, logs and wrk outputs go
#   BENCH_QUIET_LOAD=0.7     after building, wait (up to BENCH_QUIET_WAIT=1800 s) until the
#                            1-minute load average is below this before measuring
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export BENCH_OUT=${BENCH_OUT:-$ROOT/bench/out}
export CARGO_TERM_COLOR=never
MAX_ROWS=${BENCH_MAX_ROWS:-1000000}
STORE=${BENCH_STORE:-run}
rm -rf "$BENCH_OUT"
mkdir -p "$BENCH_OUT"
COMMANDS=$BENCH_OUT/commands.txt
ACTIVITY=$BENCH_OUT/activity.txt
# PostgreSQL runs on this machine: without this, libpq negotiates TLS over loopback
# (sslmode=prefer with Debian's server), a cost that measures no work of deploybot and that
# the peers, which store nothing, do not pay. A URL or PGSSLMODE naming a mode wins.
export PGSSLMODE=${PGSSLMODE:-disable}
env | grep -E '^(BENCH_|TEST_DATABASE_URL=|PGSSLMODE=)' | sort | sed 's/^/export /' >"$COMMANDS" || true
: >"$ACTIVITY"
started=$(date +%s)

say() { printf '\n==> %s\n' "$*" >&2; }

# Runs a command, recording it (with the environment it sets) for the results.
run() {
    echo "$*" >>"$COMMANDS"
    env "$@"
}

# What else the machine is doing: load and the busiest processes right now.
snapshot() {
    {
        echo "--- $1 ($(date -u +%H:%M:%S) UTC): $(cut -d' ' -f1-3 /proc/loadavg)"
        top -b -n2 -d1 -o %CPU -w 160 | awk '/^top -/{n++} n==2' | sed -n '7,13p'
    } >>"$ACTIVITY"
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

say "installing what the benchmarks need"
command -v wrk >/dev/null || apt_install wrk
command -v jq >/dev/null || apt_install jq
dpkg -s libpq-dev >/dev/null 2>&1 || apt_install libpq-dev
command -v node >/dev/null || apt_install nodejs npm
if [ ! -d bench/node/node_modules/@octokit/webhooks ]; then
    (cd bench/node && npm ci --no-audit --no-fund)
fi
if [ ! -x bench/python/.venv/bin/python ] ||
    ! bench/python/.venv/bin/python -c 'import gidgethub, aiohttp' 2>/dev/null; then
    python3 -m venv bench/python/.venv
    bench/python/.venv/bin/pip install -q -r bench/python/requirements.txt
fi

# PostgreSQL on 127.0.0.1:5432: the local Debian cluster, started if nothing answers there.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
fi
PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

say "building (release)"
run cargo build --release --locked --bin deploybot
# The bench executables are built once, up front, and then run directly: every part of
# the run measures the same build, and no rebuild or cargo lock wait happens in between.
declare -A EXE
build_benches() {
    echo "cargo bench --locked --no-run $*" >>"$COMMANDS"
    local listing
    listing=$(cargo bench --locked --no-run --message-format=json "$@" |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null
                      and (.target.kind | index("bench"))) | "\(.target.name)\t\(.executable)"') || return 1
    while IFS=$'\t' read -r name exe; do
        EXE[$name]=$exe
    done <<<"$listing"
}
build_benches --bench queue --bench ingest --bench in_progress
if [ "$STORE" = run ]; then
    build_benches --bench store || echo "the store bench did not build" >>"$ACTIVITY"
fi

if [ -n "${BENCH_QUIET_LOAD:-}" ]; then
    say "waiting for the 1-minute load average to drop below $BENCH_QUIET_LOAD"
    waited_from=$(date +%s)
    deadline=$((waited_from + ${BENCH_QUIET_WAIT:-1800}))
    until awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v max="$BENCH_QUIET_LOAD" 'BEGIN { exit !(l < max) }'; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "the load stayed above $BENCH_QUIET_LOAD; measuring anyway" >>"$ACTIVITY"
            break
        fi
        sleep 10
    done
    echo "waited $(($(date +%s) - waited_from)) s for a 1-minute load below $BENCH_QUIET_LOAD" >>"$ACTIVITY"
fi

bench() {
    local name=$1
    shift
    say "$name (cargo bench --bench $name)"
    snapshot "before $name"
    local t0
    t0=$(date +%s)
    if [ -z "${EXE[$name]:-}" ]; then
        echo "$name FAILED: not built" | tee -a "$ACTIVITY" >&2
        FAILED="$FAILED $name"
        return
    fi
    if run "$@" "${EXE[$name]#"$ROOT"/}" --bench 2>&1 | tee "$BENCH_OUT/$name.log"; then
        echo "$name took $(($(date +%s) - t0)) s" >>"$ACTIVITY"
    else
        echo "$name FAILED after $(($(date +%s) - t0)) s: see $BENCH_OUT/$name.log" | tee -a "$ACTIVITY" >&2
        FAILED="$FAILED $name"
    fi
    snapshot "after $name"
}
FAILED=""

bench queue
bench ingest BENCH_DURATION="${BENCH_DURATION:-10}" BENCH_WARMUP="${BENCH_WARMUP:-3}" \
    BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-32}" BENCH_THREADS="${BENCH_THREADS:-2}"
bench in_progress

# List page latency: the store bench (benches/store.rs) measures it; its criterion results
# are read from target/criterion.
case "$STORE" in
run)
    bench store BENCH_BACKENDS=postgres BENCH_MAX_ROWS="$MAX_ROWS" \
        BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-$PG_URL}"
    ;;
reuse | skip) echo "store bench not run (BENCH_STORE=$STORE)" >>"$ACTIVITY" ;;
*) echo "BENCH_STORE is run, reuse or skip" >&2 && exit 2 ;;
esac
if [ "$STORE" != skip ]; then
    python3 - "$MAX_ROWS" "$STORE" >"$BENCH_OUT/store.tsv" <<'EOF'
import datetime, json, os, sys
rows, mode = sys.argv[1], sys.argv[2]
cells, stamp = [], "?"
for page in ["first", "middle", "last"]:
    path = f"target/criterion/page_postgres/{page}/{rows}/new/estimates.json"
    try:
        median = json.load(open(path))["median"]["point_estimate"] / 1e6
    except OSError:
        cells.append("—")
        continue
    cells.append(f"{median:.2f}" if median < 10 else f"{median:.1f}")
    stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path)).strftime("%Y-%m-%d %H:%M")
label = f"one page of 50 deployments of one instance among {int(rows):,} rows, median ms: first / middle / last page"
label += f" (criterion results of {stamp})"
print(f"List page\t{label}\tdeploybot PostgreSQL\t{' / '.join(cells)}")
EOF
fi
snapshot "at the end"

say "writing bench/results.md"
{
    echo "# deploybot benchmarks — one run of bench/run.sh"
    echo
    echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - started)) s in all."
    echo
    echo "## Machine"
    echo
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); kernel $(uname -r)"
    echo "- rustc: $(rustc --version)"
    echo "- PostgreSQL: $(psql "$PG_URL" -Atc 'show server_version' 2>/dev/null || echo '?') (fsync=$(psql "$PG_URL" -Atc 'show fsync' 2>/dev/null || echo '?'), synchronous_commit=$(psql "$PG_URL" -Atc 'show synchronous_commit' 2>/dev/null || echo '?'); over 127.0.0.1 with PGSSLMODE=$PGSSLMODE)"
    echo "- SQLite: bundled by libsqlite3-sys $(grep -A1 'name = "libsqlite3-sys"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p') (WAL, $(grep -o 'PRAGMA synchronous = [A-Z]*' src/store/mod.rs | head -n 1 | sed 's/PRAGMA //; s/ = /=/'), as the store opens it)"
    echo "- Node.js $(node --version), @octokit/webhooks $(node -p 'require("./bench/node/node_modules/@octokit/webhooks/package.json").version')"
    echo "- $(bench/python/.venv/bin/python --version), gidgethub $(bench/python/.venv/bin/python -c 'import importlib.metadata as m; print(m.version("gidgethub"))'), aiohttp $(bench/python/.venv/bin/python -c 'import importlib.metadata as m; print(m.version("aiohttp"))')"
    echo "- $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo
    echo "## All together"
    echo
    awk -F'\t' '
        BEGIN {
            cols[1] = "deploybot SQLite"; cols[2] = "deploybot PostgreSQL"
            cols[3] = "Node @octokit/webhooks"; cols[4] = "Python gidgethub+aiohttp"
            printf "| benchmark | measurement |"
            for (c = 1; c <= 4; c++) printf " %s |", cols[c]
            print ""
            print "| --- | --- | --- | --- | --- | --- |"
        }
        {
            key = $1 SUBSEP $2
            if (!(key in seen)) { seen[key] = 1; order[++n] = key; section[n] = $1; measure[n] = $2 }
            cell[key, $3] = $4
        }
        END {
            for (i = 1; i <= n; i++) {
                printf "| %s | %s |", section[i], measure[i]
                for (c = 1; c <= 4; c++) {
                    v = cell[order[i], cols[c]]
                    printf " %s |", (v == "" ? "—" : v)
                }
                print ""
            }
        }' $(for f in queue ingest in_progress store; do
            [ -f "$BENCH_OUT/$f.tsv" ] && echo "$BENCH_OUT/$f.tsv"
        done)
    echo
    echo "## Details"
    for name in queue ingest in_progress; do
        echo
        cat "$BENCH_OUT/$name.md" 2>/dev/null || echo "($name: no results)"
    done
    if [ "$STORE" = run ]; then
        echo
        echo "Store bench (list pages): see \`$BENCH_OUT/store.log\`; criterion results in target/criterion/page_postgres."
    fi
    echo
    echo "## What else was running"
    echo
    echo '```'
    cat "$ACTIVITY"
    echo '```'
    echo
    echo "## Commands"
    echo
    echo '```'
    echo "bench/run.sh    # which ran, from $(pwd) (target/release/deps/NAME-HASH is what"
    echo "                # \`cargo bench --bench NAME\` runs):"
    cat "$COMMANDS"
    echo '```'
} >bench/results.md
cat bench/results.md
if [ -n "$FAILED" ]; then
    echo "FAILED:$FAILED" >&2
    exit 1
fi
