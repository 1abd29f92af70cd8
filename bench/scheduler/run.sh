#!/usr/bin/env bash
# Scheduler and agent: cold convergence of 500 units (fake runtime), a
# 50-unit deploy, idle etcd writes, dead host to serving elsewhere (p50,
# p95), the real agent's RSS and CPU with 100 real containers; then the
# zero-downtime test under load with real Docker, publishers and router,
# three times. Needs a Docker engine. The chaos soak is bench/chaos.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s build >/dev/null
mkdir -p bench/out
tmp=$(mktemp -d)
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12579 --listen-peer-urls http://127.0.0.1:12580 2>/dev/null &
etcd=$!
trap 'kill $etcd 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:12579/health >/dev/null && break; sleep 0.2; done
go run ./bench/scheduler -etcd http://127.0.0.1:12579 -runs "${RUNS:-3}" -deaths "${DEATHS:-20}" -units "${UNITS:-100}" -idle "${IDLE:-60s}"

# Errors under load during deploy, bad release, scale, restart and
# rollback: real Docker, publishers and router, three runs.
log="$tmp/zero.log"
go test -count=3 -v -run 'TestZeroDowntimeUnderLoad' ./agent >"$log" 2>&1 || { tail -50 "$log"; exit 1; }
{
  echo "Zero-downtime under load (\`go test -count=3 -run TestZeroDowntimeUnderLoad ./agent\`, real Docker, publishers and router; ~200 req/s, keep-alive and new connections):"
  echo
  echo "| step | requests ok (3 runs) | non-2xx | connection errors |"
  echo "| --- | --- | ---: | ---: |"
  grep -oE '(deploy v1→v2|crashing release|scale 1→5→1|restart|rollback to v1.s image and config): [0-9]+ ok, [0-9]+ non-2xx, [0-9]+ connection errors' "$log" |
    awk -F': ' '{split($2,a," "); ok[$1]=ok[$1] (ok[$1]?", ":"") a[1]; bad[$1]+=a[3]; ce[$1]+=a[5]} END {for (k in ok) printf "| %s | %s | %d | %d |\n", k, ok[k], bad[k], ce[k]}' | sort
  echo
  echo "Deploy of web=3 on 3 hosts (boot 3 s, minReady 1 s, drain 1 s; budget 25 s): $(grep -oE 'deploy of 3 units took [0-9.]+s' "$log" | awk '{print $6}' | paste -sd, -)."
} >> bench/out/scheduler.md

# The chaos soak (CONTROL-PLANE.md row 16) is bench/chaos/run.sh.
cat bench/out/scheduler.md
