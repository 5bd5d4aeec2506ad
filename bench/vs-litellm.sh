#!/usr/bin/env bash
# Gateway overhead, pas against LiteLLM's proxy, same fake upstream, same load.
#
# Installs LiteLLM's proxy from PyPI into a venv under target/bench-tools/, starts it with
# no database (no DATABASE_URL: no spend logs, no keys, no budgets), its telemetry off and
# its logs at ERROR, pointed at the fast fake upstream that `pas bench gateway` starts on a
# known port, then runs `pas bench gateway --peer` at 100 and 1,000 requests per second.
# pas writes a receipt per call into SQLite during its runs; LiteLLM, without a database,
# writes nothing. The figures of the run land in target/bench-results/.
#
# Usage: bench/vs-litellm.sh [RUNS] [SECONDS]   (default 3 runs of 5 s per rate)
# Env:   RATES (default 10,100,1000: 10 is a rate one LiteLLM worker holds on two cores),
#        LITELLM_WORKERS (default 1; 2 start in ~25 s on a quiet 2-core machine), LITELLM_VERSION (default: the newest
#        on PyPI), UPSTREAM_PORT (default 18431), LITELLM_PORT (default 4000)
set -euo pipefail

runs=${1:-3}
seconds=${2:-5}
rates=${RATES:-10,100,1000}
here=$(cd "$(dirname "$0")/.." && pwd)
tools=$here/target/bench-tools
out=$here/target/bench-results
upstream_port=${UPSTREAM_PORT:-18431}
litellm_port=${LITELLM_PORT:-4000}
workers=${LITELLM_WORKERS:-1}
mkdir -p "$tools" "$out"

echo "== building pas (release)"
(cd "$here" && cargo build --release --quiet)
pas=$here/target/release/pas

venv=$tools/litellm-venv
if [ ! -x "$venv/bin/litellm" ]; then
    echo "== installing litellm[proxy] from PyPI into $venv"
    python3 -m venv "$venv" || {
        echo "error: python3 -m venv failed (on Debian: apt-get install -y python3-venv)" >&2
        exit 1
    }
    spec="litellm[proxy]${LITELLM_VERSION:+==$LITELLM_VERSION}"
    "$venv/bin/pip" install --quiet "$spec" || {
        echo "error: pip install '$spec' failed; no LiteLLM figures" >&2
        exit 1
    }
fi
version=$("$venv/bin/pip" show litellm | awk '/^Version:/ {print $2}')
echo "== litellm $version, $workers worker(s)"

cfg=$tools/litellm-config.yaml
cat > "$cfg" <<YAML
model_list:
  - model_name: canned
    litellm_params:
      model: openai/canned
      api_base: http://127.0.0.1:$upstream_port/v1
      api_key: fake-key
litellm_settings:
  telemetry: false
  set_verbose: false
  drop_params: true
general_settings:
  disable_spend_logs: true
YAML

log=$out/litellm.log
# No network at start (the price map ships with the package), no DB, quiet logs, and no
# master key: like pas's gateway on 127.0.0.1 in this bench, no per-request auth (LiteLLM
# refuses to start without a key unless told this is deliberate).
env -u DATABASE_URL -u LITELLM_MASTER_KEY LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true \
    "$venv/bin/litellm" --config "$cfg" --host 127.0.0.1 --port "$litellm_port" \
    --num_workers "$workers" --telemetry False >"$log" 2>&1 &
litellm_pid=$!
trap 'kill "$litellm_pid" 2>/dev/null || true; wait "$litellm_pid" 2>/dev/null || true' EXIT

echo "== waiting for LiteLLM on 127.0.0.1:$litellm_port (log: $log)"
for _ in $(seq 1 120); do
    if curl -fs "http://127.0.0.1:$litellm_port/health/liveliness" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$litellm_pid" 2>/dev/null; then
        echo "error: LiteLLM exited during start-up; last lines of $log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 1
done
curl -fs "http://127.0.0.1:$litellm_port/health/liveliness" >/dev/null || {
    echo "error: LiteLLM did not answer within 120 s" >&2
    exit 1
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
json=$out/vs-litellm-$stamp-w$workers.json
echo "== pas bench gateway --peer litellm: $runs runs of $seconds s at $rates requests/s"
"$pas" bench gateway --rates "$rates" --runs "$runs" --seconds "$seconds" \
    --upstream-port "$upstream_port" \
    --peer "http://127.0.0.1:$litellm_port/v1" --peer-name litellm --json >"$json"
echo "== figures: $json"
python3 - "$json" "$version" "$workers" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"litellm {sys.argv[2]} ({sys.argv[3]} worker(s)); median (min-max) of {r['runs_per_rate']} runs of {r['seconds_per_run']} s")
f = lambda v: f"{v['median']} ({v['min']}-{v['max']})" if v else "n/a"
for x in r["results"]:
    print(f"rate {x['rate']}")
    for t in ("direct", "pas", "litellm"):
        v = x.get(t, {})
        if not isinstance(v.get("p50_ms"), dict):
            print(f"  {t:8} {v}")
            continue
        line = f"  {t:8} p50 {f(v['p50_ms'])} ms, p99 {f(v['p99_ms'])} ms, errors {v['errors']}"
        if "overhead_p50_ms" in v:
            line += f"; overhead p50 {f(v['overhead_p50_ms'])}, p99 {f(v['overhead_p99_ms'])}"
        print(line)
    for k in ("p50", "p99"):
        key = f"ratio_litellm_to_pas_overhead_{k}_ms"
        if key in x:
            print(f"  overhead ratio litellm/pas, {k}: {x[key]}x")
print(f"receipts: {r['answered_through_pas']} answered through pas, {r['receipts_lost']} lost")
n = r["noise_cpu_loop_ms"]
print(f"noise: CPU loop {n['min']:.2f} / {n['median']:.2f} / {n['max']:.2f} ms (min / median / max)")
PY
