#!/usr/bin/env bash
# Scheduler chaos soak (CONTROL-PLANE.md row 16, Deis v1's chaos scheduler
# idea): random releases, scales, restarts, agent and leader kills, etcd
# freezes (SIGSTOP of a real etcd process) and create failures, with the
# invariants checked throughout; 10 minutes, SOAK=1h on demand.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s build >/dev/null
mkdir -p bench/out
tmp=$(mktemp -d)
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12679 --listen-peer-urls http://127.0.0.1:12680 2>/dev/null &
etcd=$!
trap 'kill -CONT $etcd 2>/dev/null; kill $etcd 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:12679/health >/dev/null && break; sleep 0.2; done
go run ./bench/scheduler -etcd http://127.0.0.1:12679 -etcd-pid "$etcd" -soak "${SOAK:-10m}"
