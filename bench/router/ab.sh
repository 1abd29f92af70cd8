#!/usr/bin/env bash
# A/B of a router change: this tree's router and BASE's (a git revision,
# default HEAD) run side by side in front of the same nginx backend; wrk
# loads them in turn, ROUNDS times (default 8), the order alternating.
# Per round and router: requests/s and CPU µs per request (utime + stime of
# the router process from /proc over the run). MODE=tls-resume or tls-full
# measures TLS handshakes instead (bench/router/tlsbench, 8 clients; resumed
# with TLS 1.2 tickets, or full with X25519). A one-system-call change
# is a few percent of the router's CPU per request, well inside this shared
# machine's run-to-run noise: only many alternating rounds, compared as
# medians, can show it. Everything on 127.0.0.1; nginx and wrk from apt if
# missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
source bench/router/nginx.sh
BASE=${BASE:-HEAD} ROUNDS=${ROUNDS:-8} DURATION=${DURATION:-5s} MODE=${MODE:-http}
need wrk nginx openssl
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  nginx -p "$tmp" -c backend.conf -s stop 2>/dev/null || true
  wait 2>/dev/null || true; rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/router-new" ./cmd/router
go build -o "$tmp/tlsbench" ./bench/router/tlsbench
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.local.deis.example \
  -addext "subjectAltName=DNS:bench.local.deis.example" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
git worktree add -q --detach "$tmp/base-src" "$BASE"
(cd "$tmp/base-src" && go build -o "$tmp/router-base" ./cmd/router)
git worktree remove --force "$tmp/base-src"
nginx_backend_conf "$tmp" 127.0.0.1:48999 >"$tmp/backend.conf"
nginx -p "$tmp" -c backend.conf
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:42379 --advertise-client-urls http://127.0.0.1:42379 --listen-peer-urls http://127.0.0.1:42380 2>/dev/null & pids+=($!)
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:42379/health
go run ./bench/router/seed -etcd http://127.0.0.1:42379 -backend 127.0.0.1:48999 -cert "$tmp/cert.pem" -key "$tmp/key.pem"
declare -A pid port
port[new]=48080 port[base]=48081
for v in new base; do
  "$tmp/router-$v" --etcd http://127.0.0.1:42379 --http-addr 127.0.0.1:${port[$v]} --https-addr 127.0.0.1:$((port[$v] + 300)) --ssh-addr "" \
    --health-addr 127.0.0.1:$((port[$v] + 1000)) --access-log false --log-level error & pids+=($!); pid[$v]=$!
  until_ok 10 curl -sf -o /dev/null http://127.0.0.1:$((port[$v] + 1000))/healthz
done
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
load() { # router: its operations per second under MODE's load
  case $MODE in
    http) wrk -t2 -c64 -d"$DURATION" -H "Host: bench.local.deis.example" "http://127.0.0.1:${port[$1]}/" | awk '/Requests\/sec/ {print $2}' ;;
    tls-resume) "$tmp/tlsbench" -addr 127.0.0.1:$((port[$1] + 300)) -d "$DURATION" -c 8 -resume | awk '{print $1}' ;;
    tls-full) "$tmp/tlsbench" -addr 127.0.0.1:$((port[$1] + 300)) -d "$DURATION" -c 8 -classic | awk '{print $1}' ;;
    *) echo "MODE is http, tls-resume or tls-full" >&2; exit 2 ;;
  esac
}
hz=$(getconf CLK_TCK)
echo "round router ops/s cpu_us_per_op" >"$tmp/rows"
for ((r = 1; r <= ROUNDS; r++)); do
  order="new base"; ((r % 2)) || order="base new"
  for v in $order; do
    t0=$(cpu_ticks "${pid[$v]}")
    rps=$(load "$v")
    t1=$(cpu_ticks "${pid[$v]}")
    awk -v r=$r -v v=$v -v rps="$rps" -v t=$((t1 - t0)) -v hz="$hz" -v d="${DURATION%s}" \
      'BEGIN {printf "%d %s %.0f %.2f\n", r, v, rps, t / hz * 1e6 / (rps * d)}' >>"$tmp/rows"
  done
done
echo "router A/B ($MODE): this tree (new) vs $BASE (base), $ROUNDS alternating rounds of $DURATION; http: nginx backend, wrk -t2 -c64; tls-*: tlsbench -c 8"
column -t "$tmp/rows"
for v in new base; do
  awk -v v=$v '$2 == v {print $3, $4}' "$tmp/rows" | sort -n | awk -v v=$v '{r[NR] = $1} END {printf "%s ops/s median %d (range %d-%d)\n", v, r[int((NR + 1) / 2)], r[1], r[NR]}'
  awk -v v=$v '$2 == v {print $4}' "$tmp/rows" | sort -n | awk -v v=$v '{c[NR] = $1} END {printf "%s CPU µs per op median %.2f (range %.2f-%.2f)\n", v, c[int((NR + 1) / 2)], c[1], c[NR]}'
done
