#!/usr/bin/env bash
# Publisher: start-to-published latency vs the TCP floor, reconcile cost
# with 200 containers, etcd writes while idle. Needs a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s build >/dev/null
tmp=$(mktemp -d)
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12479 --listen-peer-urls http://127.0.0.1:12480 2>/dev/null &
etcd=$!
trap 'kill $etcd 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:12479/health >/dev/null && break; sleep 0.2; done
go run ./bench/publisher -etcd http://127.0.0.1:12479 -starts "${STARTS:-30}" -fleet "${FLEET:-200}" -idle "${IDLE:-30s}"
