#!/usr/bin/env bash
# Where each proxy's CPU goes, per request, under the same wrk load
# (docs/router.md "Where the router's time goes"): the router, nginx and
# HAProxy one after the other, each in front of the same nginx backend.
# Per request: CPU µs (perf task-clock), involuntary and voluntary context
# switches (/proc), system calls by kind (perf stat), then the kernel / user
# split (perf record). BACKEND=go puts bench/router/backend behind them
# instead. BACKEND_SCHED=batch runs the backend as SCHED_BATCH, whose
# wake-ups do not preempt the task running (the experiment of docs/router.md
# "Where the router's time goes"). Installs perf, wrk, nginx and haproxy
# when missing; everything on 127.0.0.1. BASE=<git revision> profiles that
# revision's router as well, before the others: a change's effect in one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
source bench/router/haproxy.sh
source bench/router/nginx.sh
need wrk nginx haproxy perf:linux-perf
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for c in backend proxy; do nginx -p "$tmp" -c $c.conf -s stop 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$tmp"
}
trap cleanup EXIT
cores=$(nproc)
go build -o "$tmp/router" ./cmd/router # with symbols, for perf
if [ -n "${BASE:-}" ]; then # BASE=<git revision>: that revision's router is profiled too, first
  git worktree add -q --detach "$tmp/base-src" "$BASE"
  (cd "$tmp/base-src" && go build -o "$tmp/router-base" ./cmd/router)
  git worktree remove --force "$tmp/base-src"
fi
sched=()
[ "${BACKEND_SCHED:-}" = batch ] && sched=(chrt --batch 0)
if [ "${BACKEND:-nginx}" = go ]; then
  go build -o "$tmp/backend" ./bench/router/backend
  "${sched[@]}" "$tmp/backend" -addr 127.0.0.1:38999 & pids+=($!)
else
  nginx_backend_conf "$tmp" 127.0.0.1:38999 >"$tmp/backend.conf"
  "${sched[@]}" nginx -p "$tmp" -c backend.conf
fi
cat > "$tmp/proxy.conf" <<NGINX
worker_processes $cores;
pid $tmp/proxy.pid;
error_log $tmp/proxy-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:38999; keepalive 128; }
  server {
    listen 127.0.0.1:38081;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; }
  }
}
NGINX
nginx -p "$tmp" -c proxy.conf
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:32379 --advertise-client-urls http://127.0.0.1:32379 --listen-peer-urls http://127.0.0.1:32380 2>/dev/null & pids+=($!)
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:32379/health
go run ./bench/router/seed -etcd http://127.0.0.1:32379 -backend 127.0.0.1:38999
"$tmp/router" --etcd http://127.0.0.1:32379 --http-addr 127.0.0.1:38080 --https-addr "" --ssh-addr "" \
  --health-addr 127.0.0.1:39090 --access-log false --log-level error & pids+=($!); router=$!
proxies=()
if [ -n "${BASE:-}" ]; then
  "$tmp/router-base" --etcd http://127.0.0.1:32379 --http-addr 127.0.0.1:38083 --https-addr "" --ssh-addr "" \
    --health-addr 127.0.0.1:39091 --access-log false --log-level error & pids+=($!)
  proxies+=("router@$BASE $! 38083")
  until_ok 10 curl -sf -o /dev/null http://127.0.0.1:39091/healthz
fi
haproxy_cfg 127.0.0.1:38082 127.0.0.1:38999 > "$tmp/haproxy.cfg"
haproxy -f "$tmp/haproxy.cfg" & pids+=($!); haproxy=$!
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:39090/healthz
nginx_workers=$(pgrep -P "$(cat "$tmp/proxy.pid")" | paste -sd,)
proxies+=("router $router 38080" "nginx $nginx_workers 38081" "haproxy $haproxy 38082")
calls=read,write,recvfrom,sendto,readv,writev,epoll_wait,epoll_pwait,futex,nanosleep
events=task-clock,$(tr , '\n' <<<"$calls" | sed 's/^/syscalls:sys_enter_/' | paste -sd,)
switches() { # pids (comma-separated): "voluntary involuntary" context switches of all their threads
  local p s=0 n=0 v i
  for p in ${1//,/ }; do
    read -r v i < <(cat /proc/"$p"/task/*/status 2>/dev/null | awk '$1=="voluntary_ctxt_switches:" {v+=$2} $1=="nonvoluntary_ctxt_switches:" {i+=$2} END {print v+0, i+0}')
    s=$((s + v)); n=$((n + i))
  done
  echo "$s $n"
}
go_split() { # perf.data of a Go proxy: its user-space share by what the code is
  echo "  of which, by code:"
  perf report -i "$1" --no-children --sort dso,sym --stdio -g none 2>/dev/null | awk '
    /^ +[0-9.]+%/ {
      pct = $1; sub("%", "", pct); dso = $2; sym = $4
      if (dso ~ /kernel/ || dso ~ /vdso/) next
      if (sym ~ /^runtime\.|^internal\/runtime\/[a-z]+\.[^S]|^gcWriteBarrier|^indexbyte|^memeqbody|^cmpbody|^aeshash/) k = "Go runtime (scheduler, poller, memmove)"
      else if (sym ~ /fasthttp/) k = "fasthttp (parsing, writing, server loop, HostClient)"
      else if (sym ~ /dataplane/) k = "router code"
      else if (sym ~ /internal\/poll|^net\.|^syscall\.|internal\/runtime\/syscall/) k = "net, internal/poll, syscall wrappers"
      else if (sym ~ /^time\./) k = "time"
      else if (sym ~ /prometheus/) k = "prometheus"
      else k = "other (bufio, bytes, strconv, sync, netip)"
      share[k] += pct
    }
    END { for (k in share) printf "    %5.2f%% %s\n", share[k], k }' | sort -rn
}
echo "backend: ${BACKEND:-nginx} ${BACKEND_SCHED:-}; wrk -t2 -c64, keep-alive, the same request to each proxy in turn"
for who in "${proxies[@]}"; do
  read -r name pid port <<<"$who"
  wrk -t2 -c64 -d16s -H "Host: bench.local.deis.example" "http://127.0.0.1:$port/" >"$tmp/wrk-$name" &
  w=$!
  sleep 2
  read -r v0 i0 <<<"$(switches "$pid")"
  perf stat -x, -e "$events" -p "$pid" -- sleep 5 2>"$tmp/stat-$name"
  read -r v1 i1 <<<"$(switches "$pid")"
  perf record -q -p "$pid" -o "$tmp/perf-$name" -- sleep 5 2>/dev/null
  wait $w
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk-$name")
  echo "== $name: $rps req/s (wrk over 16 s); per request over a 5 s window:"
  grep -E "Non-2xx|Socket errors" "$tmp/wrk-$name" | sed 's/^ */  wrk: /' || true
  awk -F, -v rps="$rps" '$3=="task-clock" {printf "  %-12s %.1f µs\n", "CPU", $1 * 1000 / (rps * 5)}' "$tmp/stat-$name"
  awk -v rps="$rps" -v v=$((v1 - v0)) -v i=$((i1 - i0)) 'BEGIN {printf "  %-12s %.2f involuntary, %.2f voluntary (over the same window, about)\n", "switches", i / (rps * 5), v / (rps * 5)}'
  awk -F, -v rps="$rps" '$1 ~ /^[0-9]+$/ && $1 > 0 && $3 ~ /^syscalls/ { sub("syscalls:sys_enter_", "", $3); printf "  %-12s %.2f\n", $3, $1 / (rps * 5) }' "$tmp/stat-$name"
  perf report -i "$tmp/perf-$name" --no-children --sort dso --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ {printf "  %s %s\n", $1, $2}' | head -4
  case $name in router*) go_split "$tmp/perf-$name" ;; esac
done
