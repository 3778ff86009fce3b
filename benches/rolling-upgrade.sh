#!/usr/bin/env bash
# A rolling upgrade, rehearsed: an earlier build and this one share one PostgreSQL
# database while a stream of pushes arrives, the way a Kubernetes Deployment replaces its
# pods one at a time. It checks that nothing is lost or done twice:
#   - every push sent (to one replica, then redelivered to the other under the same
#     delivery id; the replica that gets it first alternates) was answered 2xx and stored
#     once;
#   - every push made exactly one deployment, and every deployment ended;
#   - no deployment ran a phase twice (the provider writes one line per phase it runs);
#   - no outbox item failed or was left unsent (without GitHub credentials every report
#     ends `skipped`: logged instead of sent).
#
# Usage: benches/rolling-upgrade.sh
#   OLD_REV    the earlier revision (default: the commit before the newest migration)
#   OLD_BIN    a deploybot binary of it, to skip building it
#   NEW_BIN    this revision's binary (default: built with cargo build --release)
#   PG_URL     a PostgreSQL server (default postgres://postgres@127.0.0.1:5432)
#   PUSHES     pushes in all (default 120), over REPOS repositories (default 4)
#   KEEP       1: keep the work directory and the database for a look afterwards
# It needs git, cargo, curl and psql. CI does not run it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PUSHES=${PUSHES:-120}
REPOS=${REPOS:-4}
work=$(mktemp -d "${TMPDIR:-/tmp}/deploybot-upgrade.XXXXXX")
db="deploybot_upgrade_$$"
pids=()

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" != 1 ]; then
        psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
        git worktree remove --force "$work/old" >/dev/null 2>&1 || true
        rm -rf "$work"
    else
        say "kept $work and database $db"
    fi
}
trap cleanup EXIT

# The earlier build.
if [ -z "${OLD_BIN:-}" ]; then
    if [ -z "${OLD_REV:-}" ]; then
        newest=$(ls migrations/postgres | sort | tail -1)
        added=$(git log --format=%H --diff-filter=A -1 -- "migrations/postgres/$newest")
        OLD_REV=$(git rev-parse "$added^")
    fi
    say "building the earlier revision $OLD_REV"
    git worktree add --detach "$work/old" "$OLD_REV" >/dev/null
    CARGO_TARGET_DIR="$work/old-target" cargo build --release --locked --bin deploybot \
        --manifest-path "$work/old/Cargo.toml" >"$work/old-build.log" 2>&1
    OLD_BIN="$work/old-target/release/deploybot"
fi
if [ -z "${NEW_BIN:-}" ]; then
    say "building this revision"
    cargo build --release --locked --bin deploybot >"$work/new-build.log" 2>&1
    NEW_BIN="$here/target/release/deploybot"
fi

psql "$PG_URL/postgres" -qc "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$PG_URL/$db"
export DEPLOYBOT_WEBHOOK_SECRET="upgrade-rehearsal-secret"
runs="$work/runs.log"
: >"$runs"

# The configuration both builds read: REPOS instances, each deploying pushes to main with
# a provider that records each run and takes a moment.
{
    echo 'listen = "127.0.0.1:0"'
    echo '[worker]'
    echo 'concurrency = 4'
    echo 'lease = "5s"'
    for n in $(seq 1 "$REPOS"); do
        cat <<EOF
[[instances]]
name = "app$n"
repo = "acme/app$n"
environment = "production"
image = "registry.example/app$n:{sha}"
strategy = "recreate"
on_push = ["main"]
[instances.provider]
kind = "command"
run = ["sh", "-c", "echo \"\$DEPLOY_ID \$DEPLOY_PHASE \$DEPLOY_SLOT\" >> '$runs'; sleep 0.2"]
EOF
    done
} >"$work/deploybot.toml"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME BINARY: a replica on a free port; sets $port.
start() {
    port=$(free_port)
    DEPLOYBOT_LISTEN="127.0.0.1:$port" "$2" serve --config "$work/deploybot.toml" \
        >"$work/$1.log" 2>&1 &
    pids+=($!)
    eval "pid_$1=$!"
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "replica $1 did not become ready:"; tail -20 "$work/$1.log"; exit 1
}

sent=0
refused=0
# push N URL_A URL_B: one push to app(N mod REPOS), delivered to A, then redelivered to B.
push() {
    local n=$1 repo="acme/app$(( ($1 % REPOS) + 1 ))"
    local sha
    sha=$(printf '%040x' "$n")
    local delivery first=$2 second=$3
    delivery=$(python3 -c 'import uuid; print(uuid.uuid4())')
    if [ $((n % 2)) = 0 ]; then first=$3 second=$2; fi
    for url in "$first" "$second"; do
        if ! "$NEW_BIN" simulate push --repo "$repo" --sha "$sha" --delivery "$delivery" \
            --url "$url" --json >>"$work/answers.log" 2>&1; then
            refused=$((refused + 1))
        fi
    done
    sent=$((sent + 1))
}

say "the earlier build starts on an empty database (its migrations run)"
start old1 "$OLD_BIN"; old1=$port
start old2 "$OLD_BIN"; old2=$port
half=$((PUSHES / 3))
for n in $(seq 1 "$half"); do push "$n" "http://127.0.0.1:$old1" "http://127.0.0.1:$old2"; done

say "the first replica is replaced by this build (its migrations expand the schema)"
kill -TERM "$pid_old1"; wait "$pid_old1" 2>/dev/null || true
start new1 "$NEW_BIN"; new1=$port
for n in $(seq $((half + 1)) $((2 * half))); do
    push "$n" "http://127.0.0.1:$new1" "http://127.0.0.1:$old2"
done

say "the second replica is replaced too"
kill -TERM "$pid_old2"; wait "$pid_old2" 2>/dev/null || true
start new2 "$NEW_BIN"; new2=$port
for n in $(seq $((2 * half + 1)) "$PUSHES"); do
    push "$n" "http://127.0.0.1:$new2" "http://127.0.0.1:$new1"
done

q() { psql "$DATABASE_URL" -Atqc "$1"; }
say "waiting for the queue and the outbox to drain"
for _ in $(seq 1 600); do
    left=$(q "SELECT (SELECT count(*) FROM deployments WHERE state IN ('pending','running')) + (SELECT count(*) FROM outbox WHERE state = 'pending')")
    [ "$left" = 0 ] && break
    sleep 0.5
done

deliveries=$(q "SELECT count(*) FROM deliveries WHERE event = 'push'")
deployments=$(q "SELECT count(*) FROM deployments")
keys=$(q "SELECT count(DISTINCT trigger_key) FROM deployments")
unfinished=$(q "SELECT count(*) FROM deployments WHERE state IN ('pending','running')")
by_state=$(q "SELECT state || ' ' || count(*) FROM deployments GROUP BY state ORDER BY state" | paste -sd, -)
ran=$(cut -d' ' -f1 "$runs" | sort -u | wc -l)
phases=$(wc -l <"$runs")
ran_twice=$(sort "$runs" | uniq -d | wc -l)
outbox_failed=$(q "SELECT count(*) FROM outbox WHERE state = 'failed'")
outbox_pending=$(q "SELECT count(*) FROM outbox WHERE state = 'pending'")
outbox_done=$(q "SELECT count(*) FROM outbox WHERE state IN ('sent', 'skipped')")
by_replica=$(for r in old1 old2 new1 new2; do
    printf '%s %s, ' "$r" "$(grep -c 'deployment finished' "$work/$r.log" || true)"
done)

echo
echo "pushes sent:                 $sent (each delivered twice: $((2 * sent)) requests, $refused refused)"
echo "push deliveries stored:      $deliveries"
echo "deployments:                 $deployments ($keys distinct pushes); $by_state"
echo "deployments not ended:       $unfinished"
echo "deployments run:             $ran ($phases provider phases, $ran_twice run twice)"
echo "finished by replica:         ${by_replica%, }"
echo "outbox items:                $outbox_done sent or logged, $outbox_pending pending, $outbox_failed failed"

ok=1
[ "$refused" = 0 ] || { echo "FAIL: $refused deliveries were not answered 2xx"; ok=0; }
[ "$deliveries" = "$sent" ] || { echo "FAIL: $deliveries deliveries stored for $sent pushes"; ok=0; }
[ "$deployments" = "$sent" ] && [ "$keys" = "$sent" ] || { echo "FAIL: $deployments deployments for $sent pushes"; ok=0; }
[ "$unfinished" = 0 ] || { echo "FAIL: $unfinished deployments did not end"; ok=0; }
[ "$ran_twice" = 0 ] || { echo "FAIL: $ran_twice deployment phases ran twice"; ok=0; }
[ "$outbox_failed" = 0 ] && [ "$outbox_pending" = 0 ] || { echo "FAIL: outbox items failed or unsent"; ok=0; }
if [ "$ok" = 1 ]; then echo "PASS: nothing lost, nothing done twice"; else exit 1; fi
