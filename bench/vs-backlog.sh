#!/usr/bin/env bash
# Board reads, pas against Backlog.md, on the same 5,000 tasks.
#
# Installs backlog.md from npm into target/bench-tools/backlog (no global install), makes a
# Backlog.md project and a pas workspace side by side in a scratch folder, puts the same
# 5,000 tasks in both (title, description, priority; all not started: Backlog.md's
# "To Do", pas's inbox, where pas parses every card), then times reads with hyperfine:
# `backlog task list --plain` against `pas status` and `pas jobs` (and their --json).
#
# Creating 5,000 tasks through `backlog task create` takes about 1.2 s each (over an hour
# and a half), so the first task is created by the CLI and the other 4,999 are written in
# exactly the format it wrote; the script checks that Backlog.md lists all 5,000.
#
# Usage: bench/vs-backlog.sh [TASKS] [RUNS]   (default 5000 tasks, 10 timed runs each)
set -euo pipefail

tasks=${1:-5000}
runs=${2:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
tools=$here/target/bench-tools
out=$here/target/bench-results
mkdir -p "$tools/backlog" "$out"

command -v hyperfine >/dev/null || {
    echo "error: hyperfine not found (on Debian: apt-get install -y hyperfine)" >&2
    exit 1
}
echo "== building pas (release)"
(cd "$here" && cargo build --release --quiet)
pas=$here/target/release/pas

backlog=$tools/backlog/node_modules/.bin/backlog
if [ ! -x "$backlog" ]; then
    echo "== installing backlog.md from npm into $tools/backlog"
    (cd "$tools/backlog" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        npm install --no-audit --no-fund "backlog.md${BACKLOG_VERSION:+@$BACKLOG_VERSION}") || {
        echo "error: npm install backlog.md failed; no Backlog.md figures" >&2
        exit 1
    }
fi
version=$("$backlog" --version)
echo "== backlog.md $version, pas $("$pas" --version 2>/dev/null || echo '?')"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pas-vs-backlog-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
bl=$scratch/backlog-project
ws=$scratch/pas-workspace
mkdir -p "$bl"

echo "== Backlog.md project: init, one task by the CLI, $((tasks - 1)) written in its format"
(cd "$bl" && git init -q && "$backlog" init bench --defaults --integration-mode none \
    --check-branches false --include-remote false </dev/null >/dev/null)
(cd "$bl" && "$backlog" task create "Bench task 1" -d "Description of bench task 1" \
    --priority high </dev/null >/dev/null)

echo "== pas workspace: init, $tasks cards in work/inbox/"
"$pas" init "$ws" >/dev/null

python3 - "$bl/backlog/tasks" "$ws/work/inbox" "$tasks" <<'PY'
import glob, os, sys
tasks_dir, inbox, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
first = glob.glob(os.path.join(tasks_dir, "task-1 - *.md"))
assert len(first) == 1, f"backlog task create wrote {first}"
template = open(first[0]).read()
date = next(l for l in template.splitlines() if l.startswith("created_date:"))
prios = ["high", "medium", "low"]
for i in range(1, n + 1):
    title, prio = f"Bench task {i}", prios[(i - 1) % 3]
    desc = f"Description of bench task {i}"
    if i > 1:  # the same fields, order and sections as the CLI's own file
        body = (f"---\nid: TASK-{i}\ntitle: {title}\nstatus: To Do\nassignee: []\n{date}\n"
                f"labels: []\ndependencies: []\npriority: {prio}\nordinal: {i * 1000}\n---\n\n"
                f"## Description\n\n<!-- SECTION:DESCRIPTION:BEGIN -->\n{desc}\n"
                f"<!-- SECTION:DESCRIPTION:END -->\n")
        with open(os.path.join(tasks_dir, f"task-{i} - Bench-task-{i}.md"), "w") as f:
            f.write(body)
    with open(os.path.join(inbox, f"T{i:05}.yaml"), "w") as f:
        f.write(f"title: {title}\ndescription: {desc}\npriority: {prio}\n")
PY

listed=$(cd "$bl" && "$backlog" task list --plain | grep -c 'TASK-' || true)
cards=$("$pas" jobs --root "$ws" --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(len(v["jobs"] if isinstance(v, dict) else v))')
echo "== listed: backlog $listed tasks, pas $cards cards"
if [ "$listed" != "$tasks" ] || [ "$cards" != "$tasks" ]; then
    echo "error: expected $tasks in both" >&2
    exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
json=$out/vs-backlog-$stamp.json
echo "== hyperfine: $runs runs each, 2 warm-ups"
(cd "$bl" && hyperfine -N --warmup 2 --runs "$runs" --export-json "$json" \
    -n "backlog task list --plain" "$backlog task list --plain" \
    -n "backlog task list --json" "$backlog task list --json" \
    -n "pas status" "$pas status --root $ws" \
    -n "pas status --json" "$pas status --json --root $ws" \
    -n "pas jobs" "$pas jobs --root $ws" \
    -n "pas jobs --json" "$pas jobs --json --root $ws")

python3 - "$json" "$version" "$tasks" <<'PY'
import json, statistics, sys
r = {x["command"]: x["times"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"backlog.md {sys.argv[2]}, {sys.argv[3]} tasks; median (min-max) of {len(next(iter(r.values())))} runs, ms")
med = {k: statistics.median(v) * 1000 for k, v in r.items()}
for k, v in r.items():
    print(f"  {k:28} {med[k]:8.1f} ({min(v)*1000:.1f}-{max(v)*1000:.1f})")
base = med["backlog task list --plain"]
for k in ("pas status", "pas jobs"):
    print(f"  ratio backlog task list --plain / {k}: {base / med[k]:.1f}x")
print(f"  ratio backlog task list --json / pas jobs --json: {med['backlog task list --json'] / med['pas jobs --json']:.1f}x")
PY
echo "== figures: $json"
