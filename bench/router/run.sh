#!/usr/bin/env bash
# Router vs nginx, HAProxy and Caddy, proxying to the same local backend,
# measured by wrk in one run: keep-alive, 64 connections, small responses.
# The backend is nginx answering from memory (the main tables), then the Go
# fasthttp backend of bench/router/backend (one more table): which app sits
# behind the proxies changes how the kernel schedules them, and so the
# ranking (docs/router.md "Performance" says how much).
# Also TLS full handshakes per second, router vs nginx (openssl s_time).
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
source bench/router/haproxy.sh
source bench/router/nginx.sh
out=bench/out; mkdir -p "$out"
DURATION=${DURATION:-10s}
need nginx haproxy caddy wrk openssl
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
router_pid=""; haproxy_pid=""; caddy_pid=""; backend_pid=""
cleanup() {
  for p in "${pids[@]}" $router_pid $haproxy_pid $caddy_pid $backend_pid; do kill "$p" 2>/dev/null || true; done
  nginx -p "$tmp" -c nginx.conf -s stop 2>/dev/null || true
  nginx -p "$tmp" -c backend.conf -s stop 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/backend" ./bench/router/backend
cores=$(nproc)
start_backend() { # nginx|go: the app on 127.0.0.1:18999, in its own process(es)
  case $1 in
    nginx)
      nginx_backend_conf "$tmp" 127.0.0.1:18999 >"$tmp/backend.conf"
      nginx -p "$tmp" -c backend.conf ;;
    go) "$tmp/backend" -addr 127.0.0.1:18999 & backend_pid=$! ;;
  esac
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18999/ && return; sleep 0.1; done
  echo "bench/router: the $1 backend did not answer" >&2; exit 1
}
stop_backend() {
  nginx -p "$tmp" -c backend.conf -s stop 2>/dev/null || true
  if [ -n "$backend_pid" ]; then kill "$backend_pid" 2>/dev/null || true; wait "$backend_pid" 2>/dev/null || true; backend_pid=""; fi
  sleep 1
}
start_backend nginx
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12379 --listen-peer-urls http://127.0.0.1:12380 2>/dev/null & pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:12379/health >/dev/null && break; sleep 0.2; done

# Certificates for the TLS comparison.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.local.deis.example \
  -addext "subjectAltName=DNS:bench.local.deis.example" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# Route "bench" to the backend, with the certificate, through etcd.
go run ./bench/router/seed -etcd http://127.0.0.1:12379 -backend 127.0.0.1:18999 -cert "$tmp/cert.pem" -key "$tmp/key.pem"

# Every proxy gets the machine's cores (router: GOMAXPROCS, nginx:
# worker_processes auto, HAProxy: nbthread, Caddy: GOMAXPROCS), keep-alive
# to the backend, and the same access-log setting: off for the main table,
# on (to a file) for the second. docs/router.md says why.
start_proxies() { # on|off
  local log=$1
  ./bin/router --etcd http://127.0.0.1:12379 --http-addr 127.0.0.1:18080 --https-addr 127.0.0.1:18443 --ssh-addr "" \
    --health-addr 127.0.0.1:19090 --access-log "$([ "$log" = on ] && echo true || echo false)" --log-level warn >"$tmp/router-access.log" & router_pid=$!
  local nginx_log="access_log off;" hap_log="" caddy_log=""
  if [ "$log" = on ]; then
    nginx_log="access_log $tmp/nginx-access.log;"
    hap_log="  log stdout format raw local0
  option httplog"
    caddy_log="  log {
    output file $tmp/caddy-access.log
  }"
  fi
  cat > "$tmp/nginx.conf" <<NGINX
worker_processes $cores;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 4096; }
http {
  $nginx_log
  upstream app { server 127.0.0.1:18999; keepalive 128; }
  server {
    listen 127.0.0.1:18081;
    listen 127.0.0.1:18444 ssl;
    ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; }
  }
  server {
    listen 127.0.0.1:18445 ssl;
    ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
    ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  nginx -p "$tmp" -c nginx.conf
  haproxy_cfg 127.0.0.1:18082 127.0.0.1:18999 "$hap_log" > "$tmp/haproxy.cfg"
  haproxy -f "$tmp/haproxy.cfg" >"$tmp/haproxy-access.log" 2>&1 & haproxy_pid=$!
  cat > "$tmp/Caddyfile" <<CADDY
{
  admin off
  auto_https off
}
http://:18083 {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:18999
$caddy_log
}
CADDY
  HOME=$tmp XDG_DATA_HOME=$tmp XDG_CONFIG_HOME=$tmp caddy run --config "$tmp/Caddyfile" --adapter caddyfile >/dev/null 2>&1 & caddy_pid=$!
  for port in 18080 18081 18082 18083; do
    for _ in $(seq 100); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.local.deis.example' http://127.0.0.1:$port/)" = 200 ] && break
      sleep 0.2
    done
  done
}
stop_proxies() {
  kill "$router_pid" "$haproxy_pid" "$caddy_pid" 2>/dev/null || true
  nginx -p "$tmp" -c nginx.conf -s stop 2>/dev/null || true
  wait "$router_pid" "$haproxy_pid" "$caddy_pid" 2>/dev/null || true
  sleep 1
}
pids_of() { # name: the proxy's processes (nginx: master and workers)
  case $1 in
    router) echo "$router_pid" ;;
    haproxy) echo "$haproxy_pid" ;;
    caddy) echo "$caddy_pid" ;;
    nginx) local m; m=$(cat "$tmp/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
  esac
}
cpu_ticks() { local t=0 p; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo $t; }
hz=$(getconf CLK_TCK)
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms/,"",v); print v } else if (v ~ /s$/) { sub(/s/,"",v); print v*1000 } else print v }'; }
declare -A RPS P50 P99 CPU
run_wrk() { # name port: appends this run's req/s, p50, p99 and CPU s per 100k requests
  local pids; pids=$(pids_of "$1")
  wrk -t2 -c64 -d2s -H 'Host: bench.local.deis.example' "http://127.0.0.1:$2/" >/dev/null 2>&1 # warm-up
  local before after res reqs
  before=$(cpu_ticks $pids)
  res=$(wrk -t2 -c64 -d"$DURATION" --latency -H 'Host: bench.local.deis.example' "http://127.0.0.1:$2/")
  after=$(cpu_ticks $pids)
  reqs=$(awk '/requests in/ {print $1}' <<<"$res")
  RPS[$1]+="$(awk '/Requests\/sec/ {print $2}' <<<"$res") "
  P50[$1]+="$(ms "$(awk '$1=="50%" {print $2}' <<<"$res")") "
  P99[$1]+="$(ms "$(awk '$1=="99%" {print $2}' <<<"$res")") "
  CPU[$1]+="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN{printf "%.3f", t/hz/n*100000}') "
  if grep -q "Non-2xx" <<<"$res"; then echo "bench/router: $1 answered non-2xx:"; grep Non-2xx <<<"$res"; fi
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {printf "%s–%s", v[1], v[NR]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
RUNS=${RUNS:-3}
order=(router nginx haproxy caddy)
port_of() { case $1 in router) echo 18080;; nginx) echo 18081;; haproxy) echo 18082;; caddy) echo 18083;; esac; }
bench_table() { # title: RUNS alternating rounds (the order rotates each round), then a table
  unset RPS P50 P99 CPU; declare -gA RPS P50 P99 CPU
  local r i n
  for r in $(seq "$RUNS"); do
    for i in 0 1 2 3; do
      n=${order[$(( (i + r - 1) % 4 ))]}
      run_wrk "$n" "$(port_of "$n")"
    done
  done
  echo "| proxy | requests/s, median (range) | p50 ms | p99 ms, median (range) | CPU s per 100k requests | router ÷ this (req/s) |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for n in router nginx haproxy caddy; do
    echo "| $n | $(median "${RPS[$n]}") ($(spread "${RPS[$n]}")) | $(median "${P50[$n]}") | $(median "${P99[$n]}") ($(spread "${P99[$n]}")) | $(median "${CPU[$n]}") ($(spread "${CPU[$n]}")) | $(ratio "$(median "${RPS[router]}")" "$(median "${RPS[$n]}")") |"
  done
  echo
  echo "Each run, router ÷ nginx and ÷ HAProxy req/s: $(for r in $(seq "$RUNS"); do a=$(cut -d' ' -f$r <<<"${RPS[router]}"); b=$(cut -d' ' -f$r <<<"${RPS[nginx]}"); c=$(cut -d' ' -f$r <<<"${RPS[haproxy]}"); printf '%s/%s ' "$(ratio "$a" "$b")" "$(ratio "$a" "$c")"; done)"
}
start_proxies off
bench_table > "$tmp/table_off.md"
declare -A RPS_MAIN # the main table's, for router.csv
for n in router nginx haproxy caddy; do RPS_MAIN[$n]=${RPS[$n]}; done
go build -o "$tmp/tlsbench" ./bench/router/tlsbench
tls_rate() { # port [flags]: full handshakes per second (openssl s_time cannot send SNI)
  "$tmp/tlsbench" -addr "127.0.0.1:$1" -d 5s -c 8 "${@:2}" | awk '{print $1}'
}
# Like for like: TLS 1.3 with X25519 for both (nginx's OpenSSL 3.0 has no
# ML-KEM; nginx 1.22 needs TLSv1.3 named); then
# the router with Go's default, the post-quantum X25519MLKEM768 hybrid.
tls_router=$(tls_rate 18443 -classic); tls_nginx=$(tls_rate 18444 -classic); tls_router_pq=$(tls_rate 18443)
resumed_rate() { "$tmp/tlsbench" -addr "127.0.0.1:$1" -d 5s -c 8 -resume | awk '{print $1}'; }
res_router=$(resumed_rate 18443); res_nginx=$(resumed_rate 18445)

# Scale: 10,000 more apps x 3 backends, then the router's resident memory.
go run ./bench/router/seed -etcd http://127.0.0.1:12379 -backend 127.0.0.1:18999 -apps 10000
for _ in $(seq 100); do
  apps=$(curl -s http://127.0.0.1:19090/metrics | awk '$1=="router_table_apps" {printf "%d", $2}')
  [ "${apps:-0}" -ge 10001 ] && break; sleep 0.2
done
rss_mb=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$router_pid/status)
build_ms=$(curl -s http://127.0.0.1:19090/metrics | awk '$1=="router_table_build_seconds_sum" {s=$2} $1=="router_table_build_seconds_count" {c=$2} END {if (c>0) printf "%.1f", s/c*1000}')

stop_proxies
start_proxies on
bench_table > "$tmp/table_on.md"
stop_proxies
stop_backend
start_backend go
start_proxies off
bench_table > "$tmp/table_go.md"
stop_proxies
{
  echo "## Router vs nginx, HAProxy, Caddy ($(date -u +%Y-%m-%d))"
  echo
  echo "wrk -t2 -c64 -d$DURATION --latency, keep-alive, 19-byte responses from one local backend in its own process(es); every proxy with $cores workers/threads and keep-alive to the backend; $RUNS rounds, the order rotating each round; CPU from /proc over each run (\`bench/router/run.sh\`, docs/router.md)."
  echo
  echo "### Backend nginx ($cores workers, \`return 200\`), access logs off on all"
  echo
  cat "$tmp/table_off.md"
  echo
  echo "### Backend nginx, access logs on for all (to a file; the router's JSON lines to its stdout, a file)"
  echo
  cat "$tmp/table_on.md"
  echo
  echo "### Backend Go (fasthttp, bench/router/backend), access logs off on all"
  echo
  cat "$tmp/table_go.md"
  echo
  echo "With ${apps:-?} apps (10,000 x 3 backends added): router RSS ${rss_mb} MB; mean table build ${build_ms} ms over the run."
  echo
  echo "TLS full handshakes/s (bench/router/tlsbench: 8 clients, no resumption, 5 s, TLS 1.3 and X25519 for both): router ${tls_router:-n/a}, nginx ${tls_nginx:-n/a}, ratio $(ratio "${tls_router:-0}" "${tls_nginx:-0}"). The router with post-quantum X25519MLKEM768 (what Go clients and current browsers offer first): ${tls_router_pq:-n/a}."
  echo
  echo "TLS resumed handshakes/s (tlsbench -resume: TLS 1.2 session tickets, 8 clients, 5 s; nginx with tickets and a shared session cache): router ${res_router:-n/a}, nginx ${res_nginx:-n/a}, ratio $(ratio "${res_router:-0}" "${res_nginx:-0}")."
} > "$out/router.md"
{
  echo "chart,series,value,unit"
  for n in router nginx haproxy caddy; do echo "router_requests_per_s,$n,$(median "${RPS_MAIN[$n]:-0}"),req/s"; done
  echo "router_tls_handshakes_per_s,router,${tls_router:-0},handshakes/s"
  echo "router_tls_handshakes_per_s,nginx,${tls_nginx:-0},handshakes/s"
} > "$out/router.csv"
cat "$out/router.md"
