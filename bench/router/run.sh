#!/usr/bin/env bash
# Router vs nginx, HAProxy and Caddy, proxying to the same local backend,
# measured by wrk in one run: keep-alive, 64 connections, small responses.
# Also TLS full handshakes per second, router vs nginx (openssl s_time).
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/out; mkdir -p "$out"
DURATION=${DURATION:-10s}
need=()
for p in nginx haproxy caddy wrk openssl; do command -v $p >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -p "$tmp" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
go build -o "$tmp/backend" ./bench/router/backend
"$tmp/backend" -addr 127.0.0.1:18999 & pids+=($!)
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12379 --listen-peer-urls http://127.0.0.1:12380 2>/dev/null & pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:12379/health >/dev/null && break; sleep 0.2; done

# Certificates for the TLS comparison.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.local.deis.example \
  -addext "subjectAltName=DNS:bench.local.deis.example" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# Route "bench" to the backend, with the certificate, through etcd.
go run ./bench/router/seed -etcd http://127.0.0.1:12379 -backend 127.0.0.1:18999 -cert "$tmp/cert.pem" -key "$tmp/key.pem"

./bin/router --etcd http://127.0.0.1:12379 --http-addr 127.0.0.1:18080 --https-addr 127.0.0.1:18443 --ssh-addr "" \
  --health-addr 127.0.0.1:19090 --access-log false --log-level warn & pids+=($!)

cat > "$tmp/nginx.conf" <<NGINX
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:18999; keepalive 128; }
  server {
    listen 127.0.0.1:18081;
    listen 127.0.0.1:18444 ssl;
    ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
    ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; }
  }
}
NGINX
nginx -p "$tmp" -c nginx.conf
cat > "$tmp/haproxy.cfg" <<HAP
global
  maxconn 4096
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
frontend f
  bind 127.0.0.1:18082
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:18999
HAP
haproxy -f "$tmp/haproxy.cfg" & pids+=($!)
cat > "$tmp/Caddyfile" <<CADDY
{
  admin off
  auto_https off
}
http://:18083 {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:18999
}
CADDY
HOME=$tmp XDG_DATA_HOME=$tmp XDG_CONFIG_HOME=$tmp caddy run --config "$tmp/Caddyfile" --adapter caddyfile >/dev/null 2>&1 & pids+=($!)

for port in 18080 18081 18082 18083; do
  for _ in $(seq 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.local.deis.example' http://127.0.0.1:$port/)" = 200 ] && break
    sleep 0.2
  done
done

declare -A rps p50 p99
run_wrk() { # name port
  wrk -t2 -c64 -d2s -H 'Host: bench.local.deis.example' "http://127.0.0.1:$2/" >/dev/null 2>&1 # warm-up
  local res; res=$(wrk -t2 -c64 -d"$DURATION" --latency -H 'Host: bench.local.deis.example' "http://127.0.0.1:$2/")
  rps[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$res")
  p50[$1]=$(awk '$1=="50%" {print $2}' <<<"$res")
  p99[$1]=$(awk '$1=="99%" {print $2}' <<<"$res")
  if grep -q "Non-2xx" <<<"$res"; then echo "bench/router: $1 answered non-2xx:"; grep Non-2xx <<<"$res"; fi
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms/,"",v); print v } else if (v ~ /s$/) { sub(/s/,"",v); print v*1000 } else print v }'; }
for name in router:18080 nginx:18081 haproxy:18082 caddy:18083; do run_wrk "${name%%:*}" "${name##*:}"; done

go build -o "$tmp/tlsbench" ./bench/router/tlsbench
tls_rate() { # port: full handshakes per second (openssl s_time cannot send SNI)
  "$tmp/tlsbench" -addr "127.0.0.1:$1" -d 5s -c 8 | awk '{print $1}'
}
tls_router=$(tls_rate 18443); tls_nginx=$(tls_rate 18444)

# Scale: 10,000 more apps x 3 backends, then the router's resident memory.
router_pid=${pids[2]}
go run ./bench/router/seed -etcd http://127.0.0.1:12379 -backend 127.0.0.1:18999 -apps 10000
for _ in $(seq 100); do
  apps=$(curl -s http://127.0.0.1:19090/metrics | awk '$1=="router_table_apps" {printf "%d", $2}')
  [ "${apps:-0}" -ge 10001 ] && break; sleep 0.2
done
rss_mb=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$router_pid/status)
build_ms=$(curl -s http://127.0.0.1:19090/metrics | awk '$1=="router_table_build_seconds_sum" {s=$2} $1=="router_table_build_seconds_count" {c=$2} END {if (c>0) printf "%.1f", s/c*1000}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
{
  echo "## Router vs nginx, HAProxy, Caddy"
  echo
  echo "wrk -t2 -c64 -d$DURATION --latency, keep-alive, 19-byte responses from one local backend; all on 127.0.0.1 in one run (\`bench/router/run.sh\`)."
  echo
  echo "| proxy | requests/s | p50 ms | p99 ms | router ÷ this (req/s) |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for n in router nginx haproxy caddy; do
    echo "| $n | ${rps[$n]} | $(ms "${p50[$n]}") | $(ms "${p99[$n]}") | $(ratio "${rps[router]}" "${rps[$n]}") |"
  done
  echo
  echo "With ${apps:-?} apps (10,000 x 3 backends added): router RSS ${rss_mb} MB; mean table build ${build_ms} ms over the run."
  echo
  echo "TLS full handshakes/s (bench/router/tlsbench: 8 clients, no resumption, 5 s): router ${tls_router:-n/a}, nginx ${tls_nginx:-n/a}, ratio $(ratio "${tls_router:-0}" "${tls_nginx:-0}")."
} > "$out/router.md"
{
  echo "chart,series,value,unit"
  for n in router nginx haproxy caddy; do echo "router_requests_per_s,$n,${rps[$n]},req/s"; done
  for n in router nginx haproxy caddy; do echo "router_p99_ms,$n,$(ms "${p99[$n]}"),ms"; done
  echo "router_tls_handshakes_per_s,router,${tls_router:-0},handshakes/s"
  echo "router_tls_handshakes_per_s,nginx,${tls_nginx:-0},handshakes/s"
} > "$out/router.csv"
cat "$out/router.md"
