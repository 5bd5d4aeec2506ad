#!/usr/bin/env bash
# Lifecycle throughput, drop to done: git on, git off, and git on with fsync, RUNS each,
# configurations interleaved so drift in the machine's load touches all alike.
# Figures land in target/bench-results/; the summary gives median (min-max) per figure.
#
# Usage: bench/lifecycle.sh [RUNS] [CARDS]   (default 3 runs, bursts of 10000 cards)
set -euo pipefail

runs=${1:-3}
cards=${2:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/target/bench-results
mkdir -p "$out"
echo "== building pas (release)"
(cd "$here" && cargo build --release --quiet)
pas=$here/target/release/pas
stamp=$(date -u +%Y%m%dT%H%M%SZ)

for run in $(seq 1 "$runs"); do
    for mode in git no-git fsync; do
        case $mode in
            git) flags=() ;;
            no-git) flags=(--no-git) ;;
            fsync) flags=(--fsync) ;;
        esac
        echo "== run $run/$runs, $mode"
        "$pas" bench lifecycle --cards "$cards" --seconds 5 --status-runs 3 --json \
            ${flags[@]+"${flags[@]}"} >"$out/lifecycle-$stamp-$mode-$run.json"
    done
done

python3 - "$out" "$stamp" <<'PY'
import glob, json, statistics, sys
out, stamp = sys.argv[1], sys.argv[2]
def spread(v):
    v = [x for x in v if x is not None]
    return f"{statistics.median(v):8.0f} ({min(v):.0f}-{max(v):.0f})" if v else "n/a"
print("median (min-max) over runs")
for mode in ("git", "no-git", "fsync"):
    rs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/lifecycle-{stamp}-{mode}-*.json"))]
    b = [r["bursts"][0] for r in rs]
    d = [r["done_bursts"][0] for r in rs]
    s = [r["steady"] for r in rs]
    print(f"{mode:7} drop->assigned {spread([x['assigned_per_s'] for x in b])} cards/s,"
          f" drop->done {spread([x['done_per_s'] for x in d])} cards/s,"
          f" drop->done committed {spread([x['done_committed_per_s'] for x in d])} cards/s,"
          f" steady p99 {spread([x['p99_ms'] for x in s])} ms ({len(rs)} runs, {b[0]['cards']} cards)")
    print(f"        noise median ms: {[round(r['noise_ms']['median'], 1) for r in rs]}")
PY
