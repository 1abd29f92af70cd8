#!/usr/bin/env bash
# Logger TCP ingest (octet counting, 4 connections x 200,000 messages) into
# the memory store and into the file store, against rsyslog writing the
# same messages to a file, in one run; counts received vs sent for each.
# Then GET ?log_lines=1000 latency with 1,000 apps stored, and memory per
# stored line. Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/out; mkdir -p "$out"
CONNS=${CONNS:-4}; PER=${PER:-200000}; total=$((CONNS*PER))
command -v rsyslogd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsyslog >/dev/null; }
make -s build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
go build -o "$tmp/loadgen" ./bench/logger/loadgen
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls http://127.0.0.1:12579 --listen-peer-urls http://127.0.0.1:12580 2>/dev/null & pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:12579/health >/dev/null && break; sleep 0.2; done
etcd_put() { curl -sf -X POST http://127.0.0.1:12579/v3/kv/put -d "{\"key\":\"$(printf %s "$1" | base64 -w0)\",\"value\":\"$(printf %s "$2" | base64 -w0)\"}" >/dev/null; }
now() { date +%s.%N; }
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {printf "%.0f\n", $2}'; }

# wait_count CMD: until CMD prints $total (or 300 s); echoes the elapsed time since $t0.
wait_count() {
  local deadline=$(( $(date +%s) + 300 )) got=0
  while [ "$(date +%s)" -lt $deadline ]; do
    got=$($1 || echo 0); got=${got%.*}
    [ "${got:-0}" -ge $total ] && break
    sleep 0.05
  done
  echo "$(awk -v a="$(now)" -v b="$t0" 'BEGIN{print a-b}') ${got:-0}"
}

declare -A rate recv
run_logger() { # mode adapter port
  local port=$3 http=$(( $3 + 1 ))
  etcd_put /deis/logs/storageAdapterType "$2"
  ./bin/logger --etcd http://127.0.0.1:12579 --host 127.0.0.1 --syslog-addr 127.0.0.1:$port --http-addr 127.0.0.1:$http \
    --log-root "$tmp/logs-$1" --rotate-size 1g --log-level warn & local pid=$!; pids+=($pid)
  for _ in $(seq 50); do curl -sf http://127.0.0.1:$http/healthz >/dev/null && break; sleep 0.2; done
  sleep 1 # adapter applied from etcd
  t0=$(now)
  "$tmp/loadgen" -addr 127.0.0.1:$port -c "$CONNS" -n "$PER" >/dev/null
  read -r secs got < <(wait_count "metric $http logger_stored_lines_total")
  rate[$1]=$(awk -v n="$got" -v s="$secs" 'BEGIN{printf "%.0f", n/s}'); recv[$1]=$got
  kill $pid; wait $pid 2>/dev/null || true
}
run_logger memory memory 15514
run_logger file file 15614

cat > "$tmp/rsyslog.conf" <<RS
global(workDirectory="$tmp")
module(load="imtcp")
input(type="imtcp" port="15714" address="127.0.0.1")
template(name="raw" type="string" string="%msg%\n")
*.* action(type="omfile" file="$tmp/rsyslog.out" template="raw" asyncWriting="on" ioBufferSize="64k" flushOnTXEnd="off")
RS
rsyslogd -n -f "$tmp/rsyslog.conf" -i "$tmp/rsyslog.pid" & pids+=($!)
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/15714) 2>/dev/null && break; sleep 0.2; done
t0=$(now)
"$tmp/loadgen" -addr 127.0.0.1:15714 -c "$CONNS" -n "$PER" >/dev/null
count_rsyslog() { [ -f "$tmp/rsyslog.out" ] && wc -l < "$tmp/rsyslog.out" || echo 0; }
read -r secs got < <(wait_count count_rsyslog)
rate[rsyslog]=$(awk -v n="$got" -v s="$secs" 'BEGIN{printf "%.0f", n/s}'); recv[rsyslog]=$got

# Read latency with 1,000 apps x 1,000 lines, and memory per stored line.
etcd_put /deis/logs/storageAdapterType memory
./bin/logger --etcd http://127.0.0.1:12579 --host 127.0.0.1 --syslog-addr 127.0.0.1:15814 --http-addr 127.0.0.1:15815 --log-level warn & lpid=$!; pids+=($lpid)
for _ in $(seq 50); do curl -sf http://127.0.0.1:15815/healthz >/dev/null && break; sleep 0.2; done
sleep 1
rss0=$(awk '/VmRSS/ {print $2}' /proc/$lpid/status)
t0=$(now); total=1000000
"$tmp/loadgen" -addr 127.0.0.1:15814 -c 4 -n 250000 -apps 1000 >/dev/null
wait_count "metric 15815 logger_stored_lines_total" >/dev/null
rss1=$(awk '/VmRSS/ {print $2}' /proc/$lpid/status)
read -r _ p50 _ p99 < <("$tmp/loadgen" -get http://127.0.0.1:15815/ -apps 1000 -reqs 500)
per_line=$(awk -v a="$rss0" -v b="$rss1" 'BEGIN{printf "%.0f", (b-a)*1024/1000000}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
{
  echo "## Logger vs rsyslog"
  echo
  echo "TCP ingest, octet counting, $CONNS connections x $PER messages, in one run (\`bench/logger/run.sh\`). Rate = messages stored / time from first byte sent to last message stored."
  echo
  echo "| receiver | messages/s | received / sent | ÷ rsyslog |"
  echo "| --- | ---: | ---: | ---: |"
  for n in memory file rsyslog; do
    label=$n; [ $n = memory ] && label="logger (memory)"; [ $n = file ] && label="logger (file)"; [ $n = rsyslog ] && label="rsyslog (omfile)"
    echo "| $label | ${rate[$n]} | ${recv[$n]} / $((CONNS*PER)) | $(ratio "${rate[$n]}" "${rate[rsyslog]}") |"
  done
  echo
  echo "GET /<app>?log_lines=1000 with 1,000 apps x 1,000 lines stored: p50 ${p50} ms, p99 ${p99} ms (500 requests)."
  echo "Memory per stored line (RSS growth / 1,000,000 lines of ~100 bytes): ${per_line} bytes."
} > "$out/logger.md"
{
  echo "chart,series,value,unit"
  echo "logger_ingest_msgs_per_s,logger memory,${rate[memory]},msg/s"
  echo "logger_ingest_msgs_per_s,logger file,${rate[file]},msg/s"
  echo "logger_ingest_msgs_per_s,rsyslog,${rate[rsyslog]},msg/s"
} > "$out/logger.csv"
cat "$out/logger.md"
