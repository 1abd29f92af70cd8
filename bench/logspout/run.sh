#!/usr/bin/env bash
# Logspout: 4 containers x 200,000 lines shipped to the logger (memory
# store), against `docker logs -f` of 4 identical containers (the floor:
# reading Docker's log with nothing else to do). Counts lost and duplicated
# lines per container in the logger, logspout's CPU time and peak RSS, and
# its RSS while following 100 idle containers. Needs a Docker engine;
# everything else on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/out; mkdir -p "$out"
CONTAINERS=${CONTAINERS:-4}; PER=${PER:-200000}; IDLE=${IDLE:-100}
total=$((CONTAINERS*PER))
IMAGE=deis/busybox:latest
ETCD=http://127.0.0.1:13579 LOGGER_HTTP=13515 LOGSPOUT_WEB=13800
prefix="bench-ls-$$"
make -s build >/dev/null
go run ./internal/stackimage # imports $IMAGE from /bin/busybox if missing, as the tests do
tmp=$(mktemp -d)
pids=()
cleanup() {
  local i
  for (( i=${#pids[@]}-1; i>=0; i-- )); do # logspout, logger, then etcd
    kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true
  done
  local ids; ids=$(docker ps -aq --filter "name=^/$prefix-" 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source bench/lib.sh
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {printf "%.0f\n", $2; f=1} END {if (!f) print 0}'; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f", ($12+$13)/hz}' /proc/$1/stat; } # utime+stime
vm_mb() { awk -v k="$2:" '$1==k {printf "%.1f", $2/1024}' /proc/$1/status; }
# ts_epoch CONTAINER first|last: Docker's timestamp of its first or last line.
ts_epoch() {
  local ts
  if [ "$2" = first ]; then
    ts=$({ docker logs --timestamps "$1" 2>&1 || true; } | head -n1 | cut -d' ' -f1)
  else
    ts=$(docker logs --timestamps --tail 1 "$1" 2>&1 | cut -d' ' -f1)
  fi
  date -d "$ts" +%s.%N
}

# Each container prints "<name-suffix> line <i>" for i in 0..PER-1, after 1 s
# (so a reader started just after `docker run` is attached before the first
# line), then exits, or with "stay" sleeps on.
prog="sleep 1; seq 0 $((PER-1)) | awk '{print ENVIRON[\"TAG\"] \" line \" \$1}'"
start_writers() { # suffix [stay]
  local n p=$prog
  [ "${2:-}" != stay ] || p="$prog; exec sleep 600"
  for n in $(seq "$CONTAINERS"); do
    docker run -d --name "$prefix-$1$n" -e TAG="$1$n" $IMAGE sh -c "$p" >/dev/null
  done
}
# span SUFFIX: "first last" line timestamps over the writers.
span() {
  local n first="" last="" f l
  for n in $(seq "$CONTAINERS"); do
    f=$(ts_epoch "$prefix-$1$n" first); l=$(ts_epoch "$prefix-$1$n" last)
    first=$(awk -v a="$first" -v b="$f" 'BEGIN{print (a=="" || b<a) ? b : a}')
    last=$(awk -v a="$last" -v b="$l" 'BEGIN{print (a=="" || b>a) ? b : a}')
  done
  echo "$first $last"
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print 0 }'; }

# etcd and the logger (memory store, up to 300,000 lines per app).
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls $ETCD --listen-peer-urls http://127.0.0.1:13580 >"$tmp/etcd.log" 2>&1 & pids+=($!)
until_ok 15 curl -sf $ETCD/health -o /dev/null || { echo "etcd did not start" >&2; tail "$tmp/etcd.log" >&2; exit 1; }
etcd_put /deis/logs/storageAdapterType memory:300000
./bin/logger --etcd $ETCD --host 127.0.0.1 --syslog-addr 127.0.0.1:13514 --http-addr 127.0.0.1:$LOGGER_HTTP \
  --log-root "$tmp/logs" --log-level warn & pids+=($!)
until_ok 15 curl -sf http://127.0.0.1:$LOGGER_HTTP/healthz -o /dev/null || { echo "logger did not start" >&2; exit 1; }
etcd_put /deis/logs/host 127.0.0.1
etcd_put /deis/logs/port 13514
sleep 1 # storage adapter applied from etcd

# Floor: `docker logs -f` of every writer, concurrently, each until its last
# line. These writers stay up after their last line: Docker 20.10 ends a
# follow stream when the container exits, sometimes before the reader has
# caught up (seen here: 709,027 of 800,000 lines), which would cut the floor.
phase "floor: docker logs -f"
start_writers f stay
fp=()
for n in $(seq "$CONTAINERS"); do
  # grep, not awk: mawk waits for a full input buffer, which a follow stream never ends.
  # The file appears at the last line; the stream ends when the container is removed.
  (timeout 300 docker logs -f "$prefix-f$n" 2>&1 | { grep -m1 -nxF "f$n line $((PER-1))" | cut -d: -f1 > "$tmp/floor-$n.tmp" || true
   mv "$tmp/floor-$n.tmp" "$tmp/floor-$n"; }) & fp+=($!)
done
floor_done() {
  local n p
  for n in $(seq "$CONTAINERS"); do [ -s "$tmp/floor-$n" ] || return 1; done
}
floor_ended() { # every reader has its last line, or has stopped
  local p
  floor_done && return 0
  for p in "${fp[@]}"; do ! kill -0 "$p" 2>/dev/null || return 1; done
}
until_ok 300 floor_ended || true
floor_end=$(now)
floor_got=$(cat "$tmp"/floor-* 2>/dev/null | awk '{s+=$1} END {print s+0}')
read -r f_first f_last < <(span f)
docker rm -f $(docker ps -aq --filter "name=^/$prefix-f") >/dev/null # ends the follow streams
wait "${fp[@]}" || true
floor_secs=$(sub "$floor_end" "$f_first")
floor_rate=$(rate "$floor_got" "$floor_secs")
floor_write_rate=$(rate "$total" "$(sub "$f_last" "$f_first")")

# Logspout, started before fresh writers.
start_logspout() { # state dir
  ./bin/logspout --etcd $ETCD --host 127.0.0.1 --web-addr 127.0.0.1:$LOGSPOUT_WEB --state-dir "$1" --log-level warn & lspid=$!; pids+=($lspid)
  until_ok 15 curl -sf http://127.0.0.1:$LOGSPOUT_WEB/healthz -o /dev/null || { echo "logspout did not start" >&2; exit 1; }
  # The logger route comes from etcd.
  until_ok 15 sh -c "curl -sf http://127.0.0.1:$LOGSPOUT_WEB/routes | grep -q '\"logger\"'" || { echo "logspout has no logger route" >&2; exit 1; }
}
phase "logspout: $total lines to the logger"
start_logspout "$tmp/state"
base=$(metric $LOGGER_HTTP logger_stored_lines_total)
cpu0=$(cpu_s $lspid)
start_writers l
# Until the logger has every line; or, once every writer has exited, until
# nothing more arrives for 15 s (lines lost: the time of the last line stored counts).
timed_out=0 last_n=-1 last_change=$(now) ls_end=""
deadline=$(( $(date +%s) + 300 ))
while :; do
  n=$(metric $LOGGER_HTTP logger_stored_lines_total)
  if [ "$n" -ge $((base+total)) ]; then ls_end=$(now); break; fi
  [ "$n" = "$last_n" ] || { last_n=$n; last_change=$(now); }
  if [ -z "$(docker ps -q --filter "name=^/$prefix-l")" ] && awk -v a="$(now)" -v b="$last_change" 'BEGIN{exit !(a-b > 15)}'; then
    ls_end=$last_change; timed_out=1; break
  fi
  if [ "$(date +%s)" -ge $deadline ]; then ls_end=$(now); timed_out=1; break; fi
  sleep 0.05
done
cpu1=$(cpu_s $lspid)
ls_got=$(( $(metric $LOGGER_HTTP logger_stored_lines_total) - base ))
read -r l_first l_last < <(span l)
ls_secs=$(sub "$ls_end" "$l_first")
ls_rate=$(rate "$ls_got" "$ls_secs")
ls_write_rate=$(rate "$total" "$(sub "$l_last" "$l_first")")
ls_cpu=$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN{printf "%.1f", a-b}')
sleep 2 # anything late (a duplicate) lands before the count
ls_hwm=$(vm_mb $lspid VmHWM)
lost=0 dup=0 per_container=""
for n in $(seq "$CONTAINERS"); do
  curl -sf "http://127.0.0.1:$LOGGER_HTTP/logs/$prefix-l$n?log_lines=300000" > "$tmp/got-$n" || true
  read -r d u < <(awk -v tag="l$n" -v per="$PER" '
    $(NF-2)==tag && $(NF-1)=="line" && $NF ~ /^[0-9]+$/ && $NF+0 < per { k=$NF+0; if (k in seen) dup++; else { seen[k]=1; d++ } }
    END { print d+0, dup+0 }' "$tmp/got-$n")
  lost=$((lost + PER - d)); dup=$((dup + u))
  per_container+=" l$n: $d distinct, $u dup;"
done
kill $lspid; wait $lspid 2>/dev/null || true
docker rm -f $(docker ps -aq --filter "name=^/$prefix-l") >/dev/null

# Backlog: the writers finish first (and stay up), then each reader starts
# on the complete logs, so neither is held back by the writers' own pace:
# `docker logs -f` of every container until its last line, then a fresh
# logspout shipping the same containers into the logger.
phase "backlog: docker logs -f, then logspout, on finished logs"
start_writers b stay
last_written() {
  local n
  for n in $(seq "$CONTAINERS"); do
    [ "$(docker logs --tail 1 "$prefix-b$n" 2>&1)" = "b$n line $((PER-1))" ] || return 1
  done
}
until_ok 300 last_written || { echo "backlog writers did not finish" >&2; exit 1; }
t0=$(now)
bp=()
for n in $(seq "$CONTAINERS"); do
  (timeout 300 docker logs -f "$prefix-b$n" 2>&1 | { grep -m1 -nxF "b$n line $((PER-1))" | cut -d: -f1 > "$tmp/bfloor-$n.tmp" || true
   now > "$tmp/bfloor-$n.end"; mv "$tmp/bfloor-$n.tmp" "$tmp/bfloor-$n"; }) & bp+=($!)
done
bfloor_done() { local n; for n in $(seq "$CONTAINERS"); do [ -s "$tmp/bfloor-$n" ] || return 1; done; }
until_ok 300 bfloor_done || true
bfloor_got=$(cat "$tmp"/bfloor-? 2>/dev/null | awk '{s+=$1} END {print s+0}')
bfloor_secs=$(sub "$(cat "$tmp"/bfloor-*.end | sort -n | tail -1)" "$t0")
for p in "${bp[@]}"; do pkill -P "$p" 2>/dev/null || true; done
wait "${bp[@]}" 2>/dev/null || true
bfloor_rate=$(rate "$bfloor_got" "$bfloor_secs")
base=$(metric $LOGGER_HTTP logger_stored_lines_total)
t0=$(now)
start_logspout "$tmp/state-backlog"
backlog_done() { [ "$(metric $LOGGER_HTTP logger_stored_lines_total)" -ge $((base+total)) ]; }
until_ok 300 backlog_done || echo "warning: logspout shipped $(( $(metric $LOGGER_HTTP logger_stored_lines_total) - base )) of $total backlog lines" >&2
bls_secs=$(sub "$(now)" "$t0")
bls_got=$(( $(metric $LOGGER_HTTP logger_stored_lines_total) - base ))
bls_rate=$(rate "$bls_got" "$bls_secs")
bls_cpu=$(cpu_s $lspid)
kill $lspid; wait $lspid 2>/dev/null || true
docker rm -f $(docker ps -aq --filter "name=^/$prefix-b") >/dev/null
bratio=$(awk -v a="$bls_rate" -v b="$bfloor_rate" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }')

# RSS while following IDLE idle containers (a fresh logspout, so the
# 800,000-line run's heap does not count).
phase "logspout: RSS with $IDLE idle containers"
start_logspout "$tmp/state2"
sleep 2
rss_empty=$(vm_mb $lspid VmRSS)
base=$(metric $LOGGER_HTTP logger_stored_lines_total)
seq "$IDLE" | xargs -P 8 -I{} docker run -d --name "$prefix-idle{}" $IMAGE sh -c 'echo idle {}; exec sleep 600' >/dev/null
idle_seen() { [ "$(metric $LOGGER_HTTP logger_stored_lines_total)" -ge $((base+IDLE)) ]; }
until_ok 120 idle_seen || echo "warning: logger stored $(( $(metric $LOGGER_HTTP logger_stored_lines_total) - base )) of $IDLE idle lines" >&2
sleep 10 # settle: every follower attached and waiting
rss_idle=$(vm_mb $lspid VmRSS)
docker rm -f $(docker ps -aq --filter "name=^/$prefix-idle") >/dev/null

ratio=$(awk -v a="$ls_rate" -v b="$floor_rate" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }')
ok() { if awk "BEGIN{exit !($1)}"; then echo yes; else echo "**no**"; fi; }
{
  echo "## Logspout vs docker logs -f"
  echo
  echo "$CONTAINERS containers x $PER lines (\`seq | awk\` in busybox), in one run (\`bench/logspout/run.sh\`). Live: the readers follow the writers; rate = lines received / time from the first line written (Docker's timestamp) to the last line received: by \`docker logs -f\` of all containers at once (the floor), or stored by the logger (memory store) for logspout, which is started before its containers."
  echo
  echo "| quantity | logspout | docker logs -f | ÷ docker logs -f | target |"
  echo "| --- | ---: | ---: | ---: | --- |"
  echo "| lines/s | $ls_rate | $floor_rate | $ratio | ≥ 0.9: $(ok "$ratio >= 0.9") |"
  echo "| lines received / written | $ls_got / $total | $floor_got / $total | | |"
  echo "| seconds, first line written to last received | $ls_secs | $floor_secs | | |"
  echo "| writers' own rate, lines/s (first to last line written) | $ls_write_rate | $floor_write_rate | | |"
  echo "| **backlog** lines/s: readers start on $total lines already written (logspout into the logger, from its start) | $bls_rate | $bfloor_rate | $bratio | ≥ 0.9: $(ok "$bratio >= 0.9") |"
  echo "| backlog: lines received, seconds | $bls_got, $bls_secs | $bfloor_got, $bfloor_secs | | |"
  echo "| backlog: logspout CPU seconds | $bls_cpu | | | |"
  echo
  echo "| logspout | value | target |"
  echo "| --- | ---: | --- |"
  echo "| lines lost (per container, by line number, in the logger) | $lost | 0: $(ok "$lost == 0") |"
  echo "| lines duplicated | $dup | 0: $(ok "$dup == 0") |"
  echo "| CPU seconds for the $total lines | $ls_cpu | |"
  echo "| peak RSS (VmHWM), MB | $ls_hwm | < 50: $(ok "$ls_hwm < 50") |"
  echo "| RSS with no container, MB | $rss_empty | |"
  echo "| RSS following $IDLE idle containers, MB | $rss_idle | < 50: $(ok "$rss_idle < 50") |"
  echo
  echo "Per container:${per_container%;}."
  [ $timed_out = 0 ] || echo "The logger never stored all $total lines (waited until 15 s without a new line after the writers exited, at most 300 s); the rate counts the $ls_got stored, up to the last one."
  echo
  echo "The floor's writers sleep after their last line and each \`docker logs -f\` stops at that line: Docker ($(docker version --format '{{.Server.Version}}') here) may end a follow stream when its container exits before the reader has caught up (when this bench was written, 4 exiting writers gave \`docker logs -f\` 709,027 of 800,000 lines). Logspout's writers do exit after their last line, so lines lost that way count as lost."
} > "$out/logspout.md"
{
  echo "chart,series,value,unit"
  echo "logspout_lines_per_s,logspout,$ls_rate,lines/s"
  echo "logspout_lines_per_s,docker logs -f,$floor_rate,lines/s"
  echo "logspout_backlog_lines_per_s,logspout,$bls_rate,lines/s"
  echo "logspout_backlog_lines_per_s,docker logs -f,$bfloor_rate,lines/s"
  echo "logspout_lines_lost_duplicated,lost,$lost,lines"
  echo "logspout_lines_lost_duplicated,duplicated,$dup,lines"
  echo "logspout_cpu_s,logspout ($total lines),$ls_cpu,s"
  echo "logspout_rss_mb,peak ($total lines),$ls_hwm,MB"
  echo "logspout_rss_mb,$IDLE idle containers,$rss_idle,MB"
} > "$out/logspout.csv"
phase done
cat "$out/logspout.md"
