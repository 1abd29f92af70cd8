#!/usr/bin/env bash
# Controller: p50/p99 of an app read and of a page of a 1,000-app list at
# 200 requests/s, beside a direct etcd range read (the floor); logins/s.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s build >/dev/null
mkdir -p bench/out
tmp=$(mktemp -d)
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12779 --listen-peer-urls http://127.0.0.1:12780 2>/dev/null &
etcd=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:12779/health >/dev/null && break; sleep 0.2; done
./bin/controller --etcd http://127.0.0.1:12779 --host 127.0.0.1 --http-addr 127.0.0.1:18001 --log-level warn &
ctl=$!
trap 'kill $ctl $etcd 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:18001/healthz >/dev/null && break; sleep 0.2; done
go run ./bench/controller -etcd http://127.0.0.1:12779 -controller http://127.0.0.1:18001 -apps "${APPS:-1000}" -rate "${RATE:-200}" -duration "${DURATION:-15s}" -runs "${RUNS:-3}"
