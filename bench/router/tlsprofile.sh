#!/usr/bin/env bash
# Where the router's CPU goes in TLS handshakes: the router alone (the same
# P-256 certificate as run.sh), bench/router/tlsbench for 12 s, perf
# recording the router for 8 s of it; then the share of the router's CPU
# under each step of a handshake (a step's callees included, so the lines
# overlap). MODE=resume (default: TLS 1.2 session tickets) or MODE=full.
# Installs perf when missing; everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
MODE=${MODE:-resume}
need perf:linux-perf openssl
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/router" ./cmd/router # with symbols, for perf
go build -o "$tmp/tlsbench" ./bench/router/tlsbench
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.local.deis.example \
  -addext "subjectAltName=DNS:bench.local.deis.example" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:52379 --advertise-client-urls http://127.0.0.1:52379 --listen-peer-urls http://127.0.0.1:52380 2>/dev/null & pids+=($!)
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:52379/health
go run ./bench/router/seed -etcd http://127.0.0.1:52379 -backend 127.0.0.1:58999 -cert "$tmp/cert.pem" -key "$tmp/key.pem"
"$tmp/router" --etcd http://127.0.0.1:52379 --http-addr "" --https-addr 127.0.0.1:58443 --ssh-addr "" \
  --health-addr 127.0.0.1:59090 --access-log false --log-level error & pids+=($!); router=$!
until_ok 10 curl -sf -o /dev/null http://127.0.0.1:59090/healthz
flags=(-classic)
[ "$MODE" = resume ] && flags=(-resume)
"$tmp/tlsbench" -addr 127.0.0.1:58443 -d 12s -c 8 "${flags[@]}" >"$tmp/rate" & w=$!
sleep 2
perf record -q -g -F 2999 -p "$router" -o "$tmp/perf.data" -- sleep 8 2>/dev/null
wait $w
read -r rate failed <"$tmp/rate"
echo "router, $MODE TLS handshakes: $rate a second while perf records ($failed failed; tlsbench -c 8 ${flags[*]}; run.sh measures the rate without perf)"
echo "share of the router's CPU under each step (callees included):"
perf report -i "$tmp/perf.data" --children --sort sym --stdio -g none 2>/dev/null | awk '
  BEGIN {
    n = split("serverHandshakeState).checkForResumption|decrypting the client'"'"'s ticket;" \
      "serverHandshakeState).sendSessionTicket|a new ticket (Go re-issues one on every resumption);" \
      "tls12.PRF|the TLS 1.2 PRF (HMAC-SHA256);" \
      "ecdh|key exchange (ECDH);" \
      "ecdsa|signing (ECDSA);" \
      "crypto/tls.(*Conn).closeNotify|close_notify at close;" \
      "syscall.accept4|accept;" \
      "SetKeepAliveConfig|TCP keepalive set on accept (Go'"'"'s default);" \
      "runtime.mallocgc$|allocation;" \
      "runtime.gcBgMarkWorker$|garbage collection (background);" \
      "syscall.write$|write system calls;" \
      "syscall.read$|read system calls", steps, ";")
    for (i = 1; i <= n; i++) { split(steps[i], kv, "|"); pat[i] = kv[1]; label[i] = kv[2] }
  }
  /^ +[0-9.]+%/ {
    sym = $4; for (j = 5; j <= NF; j++) sym = sym " " $j
    for (i = 1; i <= n; i++) if (!(i in got) && (pat[i] ~ /\$$/ ? sym ~ pat[i] : index(sym, pat[i]) > 0)) got[i] = $1
  }
  END { for (i = 1; i <= n; i++) if (i in got) printf "  %7s  %s\n", got[i], label[i] }'
