#!/usr/bin/env bash
# Where the router's CPU goes beside HAProxy's, under the same wrk load
# (docs/router.md "Where the router's time goes"): system calls of each
# process by kind over 5 s (perf stat), then the kernel / user split
# (perf record). Needs perf, wrk and haproxy; everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
source bench/router/haproxy.sh
for p in perf wrk haproxy; do command -v $p >/dev/null || { echo "needs $p" >&2; exit 1; }; done
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
go build -o "$tmp/backend" ./bench/router/backend
go build -o "$tmp/router" ./cmd/router # with symbols, for perf
"$tmp/backend" -addr 127.0.0.1:38999 & pids+=($!)
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:32379 --listen-peer-urls http://127.0.0.1:32380 2>/dev/null & pids+=($!)
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:32379/health
go run ./bench/router/seed -etcd http://127.0.0.1:32379 -backend 127.0.0.1:38999
"$tmp/router" --etcd http://127.0.0.1:32379 --http-addr 127.0.0.1:38080 --https-addr "" --ssh-addr "" \
  --health-addr 127.0.0.1:39090 --access-log false --log-level error & pids+=($!); router=$!
haproxy_cfg 127.0.0.1:38082 127.0.0.1:38999 > "$tmp/haproxy.cfg"
haproxy -f "$tmp/haproxy.cfg" & pids+=($!); haproxy=$!
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:39090/healthz
calls=read,write,recvfrom,sendto,readv,writev,epoll_wait,epoll_pwait,futex,nanosleep
events=$(tr , '\n' <<<"$calls" | sed 's/^/syscalls:sys_enter_/' | paste -sd,)
for who in "router $router 38080" "haproxy $haproxy 38082"; do
  read -r name pid port <<<"$who"
  wrk -t2 -c64 -d16s -H "Host: bench.local.deis.example" "http://127.0.0.1:$port/" >"$tmp/wrk-$name" &
  w=$!
  sleep 2
  perf stat -x, -e "$events" -p "$pid" -- sleep 5 2>"$tmp/stat-$name"
  perf record -q -p "$pid" -o "$tmp/perf-$name" -- sleep 5 2>/dev/null
  wait $w
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk-$name")
  echo "== $name: $rps req/s (wrk over 16 s); per request over a 5 s window:"
  awk -F, -v rps="$rps" '$1 ~ /^[0-9]+$/ && $1 > 0 { sub("syscalls:sys_enter_", "", $3); printf "  %-12s %.2f\n", $3, $1 / (rps * 5) }' "$tmp/stat-$name"
  perf report -i "$tmp/perf-$name" --no-children --sort dso --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ {printf "  %s %s\n", $1, $2}' | head -4
done
