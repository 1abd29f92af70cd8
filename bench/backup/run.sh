#!/usr/bin/env bash
# deisctl backup and restore of 100 apps and 1 GB of logs (LOGS bytes,
# APPS apps), RUNS times each, against the floor by hand: `etcdctl
# snapshot save` plus `tar czf` of the same log directory (and, for the
# restore, `etcdctl snapshot restore` plus `tar xzf`). Medians with the
# spread; archive sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
source bench/lib.sh
make -s build >/dev/null
mkdir -p bench/out
RUNS=${RUNS:-3}; APPS=${APPS:-100}; LOGS=${LOGS:-1073741824}
command -v etcdctl >/dev/null || { sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo; $sudo_cmd apt-get install -y -qq --no-install-recommends etcd-client >/dev/null; }
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT
start_etcd() { # name client-port peer-port
  ./bin/etcd --name "$1" --data-dir "$tmp/$1" --listen-client-urls "http://127.0.0.1:$2" --listen-peer-urls "http://127.0.0.1:$3" 2>/dev/null &
  pids+=($!)
  until_ok 30 curl -sf "http://127.0.0.1:$2/health" -o /dev/null
}
start_etcd src 13379 13380
phase "filling etcd with $APPS apps and writing $((LOGS >> 20)) MB of logs"
go run ./bench/backup -etcd http://127.0.0.1:13379 -apps "$APPS" -logs-dir "$tmp/logs" -logs "$LOGS"
keys=$(ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:13379 get /deis/ --prefix --keys-only | grep -c /deis/)
b=(); bf=(); r=(); rf=()
for i in $(seq "$RUNS"); do
  phase "run $i: deisctl backup"
  t0=$(now); ./bin/deisctl --etcd http://127.0.0.1:13379 --request-timeout 10m backup "$tmp/deis$i.tgz" --logs-dir "$tmp/logs" >/dev/null; b+=("$(sub "$(now)" "$t0")")
  phase "run $i: etcdctl snapshot save + tar czf"
  t0=$(now)
  ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:13379 snapshot save "$tmp/snap$i.db" >/dev/null 2>&1
  tar -C "$tmp" -czf "$tmp/logs$i.tgz" logs
  bf+=("$(sub "$(now)" "$t0")")

  phase "run $i: deisctl restore onto a fresh etcd"
  start_etcd "dst$i" $((13400 + i * 2)) $((13401 + i * 2))
  t0=$(now); ./bin/deisctl --etcd "http://127.0.0.1:$((13400 + i * 2))" --request-timeout 10m restore "$tmp/deis$i.tgz" --logs-dir "$tmp/restored$i" >/dev/null; r+=("$(sub "$(now)" "$t0")")
  kill "${pids[-1]}"; unset 'pids[-1]'
  phase "run $i: etcdctl snapshot restore + tar xzf"
  t0=$(now)
  ETCDCTL_API=3 etcdctl snapshot restore "$tmp/snap$i.db" --data-dir "$tmp/snaprestore$i" >/dev/null 2>&1
  mkdir -p "$tmp/untar$i"; tar -C "$tmp/untar$i" -xzf "$tmp/logs$i.tgz"
  rf+=("$(sub "$(now)" "$t0")")
  cmp -s "$tmp/logs/app000.log" "$tmp/restored$i/app000.log" || { echo "restored logs differ"; exit 1; }
  size_b=$(stat -c %s "$tmp/deis$i.tgz"); size_f=$(( $(stat -c %s "$tmp/snap$i.db") + $(stat -c %s "$tmp/logs$i.tgz") ))
  rm -rf "$tmp/restored$i" "$tmp/untar$i" "$tmp/snaprestore$i" "$tmp/deis$i.tgz" "$tmp/logs$i.tgz" "$tmp/snap$i.db"
done
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.2f s (%.2f–%.2f)", v[int((NR+1)/2)], v[1], v[NR]}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$(median $1)" -v b="$(median $2)" 'BEGIN{printf "%.2f", a/b}'; }
{
  echo "# Backup and restore ($(date -u +%Y-%m-%d), $RUNS runs, median (min–max); \`bench/backup/run.sh\`)"
  echo
  echo "$APPS apps ($keys keys under /deis) and $((LOGS >> 20)) MB of logs in the file store."
  echo
  echo "| | deisctl | by hand: etcdctl snapshot + tar (the floor) | deisctl ÷ floor |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| backup | $(stats "${b[@]}") | $(stats "${bf[@]}") | $(ratio "${b[*]}" "${bf[*]}") |"
  echo "| restore | $(stats "${r[@]}") | $(stats "${rf[@]}") | $(ratio "${r[*]}" "${rf[*]}") |"
  echo "| archive size | $((size_b >> 20)) MB | $((size_f >> 20)) MB (snapshot + tar.gz) | $(awk -v a=$size_b -v b=$size_f 'BEGIN{printf "%.2f", a/b}') |"
} > "$root/bench/out/backup.md"
cat "$root/bench/out/backup.md"
