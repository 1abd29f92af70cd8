#!/usr/bin/env bash
# Builder: `git push` of a 50 MB, 5,000-file repository over the builder's
# SSH server (to a branch other than master: stored, not built) against the
# same push to a private OpenSSH sshd running git-receive-pack (the floor),
# alternately, 3 times each; a full push of the same repository to master
# of a Dockerfile app (docker build included); and for a small Dockerfile
# app, push start -> release written in etcd, 3 times. Needs a Docker
# engine and root (for sshd); everything else on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/out; mkdir -p "$out"
RUNS=${RUNS:-3}; FILES=${FILES:-5000}; FILE_KB=${FILE_KB:-10}
IMAGE=deis/busybox:latest
ETCD=http://127.0.0.1:14579 SSH_PORT=14223 HEALTH=14292 FLOOR_PORT=14022
command -v /usr/sbin/sshd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; }
make -s build >/dev/null
go run ./internal/stackimage # imports $IMAGE from /bin/busybox if missing, as the tests do
tmp=$(mktemp -d)
pids=() apps=(bench small) floor_image=bench-builder-floor-$$
cleanup() {
  local i a
  for (( i=${#pids[@]}-1; i>=0; i-- )); do # sshd, builder, then etcd
    kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true
  done
  for a in "${apps[@]}" "$floor_image"; do
    docker images --filter "reference=$a" -q 2>/dev/null | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source bench/lib.sh
# etcd_is KEY VALUE: the key holds exactly VALUE.
etcd_is() { curl -sf -m 10 -X POST $ETCD/v3/kv/range -d "{\"key\":\"$(b64 "$1")\"}" | grep -qF "\"value\":\"$(b64 "$2")\""; }
# metric NAME: sum of the builder's samples named NAME (any labels).
metric() { curl -sf -m 10 "http://127.0.0.1:$HEALTH/metrics" | awk -v m="$1" '{n=$1; sub(/\{.*/, "", n)} n==m {s+=$2} END {printf "%.4f\n", s+0}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
ok() { if awk "BEGIN{exit !($1)}"; then echo yes; else echo "**no**"; fi; }
die() { echo "builder bench: $*" >&2; [ ! -f "$tmp/builder.log" ] || tail -20 "$tmp/builder.log" >&2; exit 1; }

# etcd and the builder.
phase "etcd and builder"
./bin/etcd --data-dir "$tmp/etcd" --listen-client-urls $ETCD --listen-peer-urls http://127.0.0.1:14580 >"$tmp/etcd.log" 2>&1 & pids+=($!)
until_ok 15 curl -sf -m 2 $ETCD/health -o /dev/null || { tail "$tmp/etcd.log" >&2; die "etcd did not start"; }
./bin/builder --etcd $ETCD --host 127.0.0.1 --ssh-addr 127.0.0.1:$SSH_PORT --health-addr 127.0.0.1:$HEALTH \
  --repo-root "$tmp/repos" --log-level warn >"$tmp/builder.log" 2>&1 & builder_pid=$!; pids+=($!)
until_ok 30 curl -sf -m 2 http://127.0.0.1:$HEALTH/healthz -o /dev/null || die "builder /healthz never answered 200"

# The user's key, registered for alice, who owns the apps.
ssh-keygen -q -t ed25519 -N '' -C bench@builder -f "$tmp/id"
fp=$(ssh-keygen -E md5 -lf "$tmp/id.pub" | awk '{print $2}' | sed 's/^MD5://' | tr 'A-F' 'a-f')
etcd_put "/deis/builder/users/alice/$fp" "$(cat "$tmp/id.pub")"
for a in bench small $(seq -f 'bench%g' "$RUNS"); do etcd_put "/deis/apps/$a/owner" alice; done
etcd_put /deis/platform/domain bench.test
SSH="ssh -i $tmp/id -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10"
export GIT_SSH_COMMAND="$SSH -o LogLevel=ERROR"
pong() { timeout 20 $GIT_SSH_COMMAND -p $SSH_PORT git@127.0.0.1 ping 2>/dev/null | grep -q '^pong alice'; }
until_ok 15 pong || die "the builder never accepted alice's key (ssh ping)"

# The private OpenSSH server (the floor): root, git-receive-pack from PATH.
phase "sshd"
mkdir -p /run/sshd "$tmp/home" # /run/sshd: the privilege separation directory sshd insists on
ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh_host_ed25519_key"
cp "$tmp/id.pub" "$tmp/authorized_keys"
cat > "$tmp/sshd_config" <<EOF
ListenAddress 127.0.0.1
HostKey $tmp/ssh_host_ed25519_key
AuthorizedKeysFile $tmp/authorized_keys
PidFile $tmp/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin yes
# Not root's HOME, so bash runs no ~/.bashrc (here: pyenv init, ~0.5 s per command).
SetEnv HOME=$tmp/home
PasswordAuthentication no
KbdInteractiveAuthentication no
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" -p $FLOOR_PORT 2>"$tmp/sshd.log" & sshd_pid=$!; pids+=($!)
floor_up() { timeout 20 $GIT_SSH_COMMAND -p $FLOOR_PORT root@127.0.0.1 true 2>/dev/null; }
until_ok 15 floor_up || { cat "$tmp/sshd.log" >&2; die "private sshd did not accept the key"; }
cipher() { timeout 20 $SSH -v -p "$1" "$2"@127.0.0.1 "$3" 2>&1 >/dev/null | sed -n 's/.*kex: client->server cipher: \([^ ]*\).*/\1/p' | head -n1; }
cipher_b=$(cipher $SSH_PORT git ping) cipher_f=$(cipher $FLOOR_PORT root true)

# The repository: FILES files of FILE_KB KiB from /dev/urandom (git's zlib
# cannot shrink them), a Dockerfile, one commit.
phase "repository: $FILES x $FILE_KB KiB"
src=$tmp/src
mkdir -p "$src/data"
head -c $((FILES*FILE_KB*1024)) /dev/urandom | (cd "$src/data" && split -a 5 -d -b $((FILE_KB*1024)) - f)
printf 'FROM %s\nCOPY . /app\n' "$IMAGE" > "$src/Dockerfile"
git -C "$src" init -q -b master
git -C "$src" add -A
git -C "$src" -c user.name=bench -c user.email=bench@bench.test commit -q -m "50 MB of random files"
head_sha=$(git -C "$src" rev-parse HEAD)
repo_mb=$(du -s --apparent-size -B1 --exclude=.git "$src" | awk '{printf "%.1f", $1/1e6}')

# push LOG URL REFSPEC: times `git push` from the repository; echoes
# "wall user sys" seconds (user and sys: the client, git and ssh).
push() {
  local TIMEFORMAT='%3R %3U %3S'
  { time timeout 300 git -C "$src" push "$2" "$3" >"$1" 2>&1; } 2>"$1.time" || { cat "$1" >&2; return 1; }
  cat "$1.time"
}
has_ref() { [ "$(git --git-dir "$1" rev-parse -q --verify "$2" 2>/dev/null)" = "$head_sha" ]; }
# cpu PID: CPU seconds of PID and of the children it has reaped (the
# builder reaps git receive-pack; sshd's listener reaps each connection's
# sshd, which reaped its git-receive-pack).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f", ($12+$13+$14+$15)/hz}' "/proc/$1/stat"; }
pack_bytes() { cat "$1"/objects/pack/*.pack | wc -c; }

# Transport: floor and builder alternately, each to a fresh repository.
floor=() bld=() floor_cpu=() bld_cpu=() floor_ccpu=() bld_ccpu=()
for i in $(seq "$RUNS"); do
  phase "push $i/$RUNS: OpenSSH floor"
  git init -q --bare "$tmp/floor$i.git"
  c0=$(cpu "$sshd_pid")
  read -r w u y < <(push "$tmp/floor$i.log" "ssh://root@127.0.0.1:$FLOOR_PORT$tmp/floor$i.git" master) || die "push to the floor failed"
  until_ok 10 sh -c "! pgrep -P $sshd_pid >/dev/null" || true # the connection's sshd has exited and been reaped
  floor+=("$w") floor_ccpu+=("$(sub "$u" "-$y")") floor_cpu+=("$(sub "$(cpu "$sshd_pid")" "$c0")")
  has_ref "$tmp/floor$i.git" refs/heads/master || die "floor repository $i lacks the pushed commit"
  [ -n "${pack_b:-}" ] || pack_b=$(pack_bytes "$tmp/floor$i.git")
  rm -rf "$tmp/floor$i.git"
  phase "push $i/$RUNS: builder (refs/heads/transfer of bench$i)"
  c0=$(cpu "$builder_pid")
  read -r w u y < <(push "$tmp/bench$i.log" "ssh://git@127.0.0.1:$SSH_PORT/bench$i.git" master:refs/heads/transfer) || die "push to the builder failed"
  bld+=("$w") bld_ccpu+=("$(sub "$u" "-$y")") bld_cpu+=("$(sub "$(cpu "$builder_pid")" "$c0")")
  has_ref "$tmp/repos/bench$i.git" refs/heads/transfer || die "builder repository bench$i lacks the pushed commit"
  grep -q 'stored; only master is built' "$tmp/bench$i.log" || die "bench$i: no 'stored' message from the hook"
  rm -rf "$tmp/repos/bench$i.git"
done
floor_med=$(median "${floor[@]}") bld_med=$(median "${bld[@]}")
push_ratio=$(ratio "$bld_med" "$floor_med")
floor_cpu_med=$(median "${floor_cpu[@]}") bld_cpu_med=$(median "${bld_cpu[@]}")
floor_ccpu_med=$(median "${floor_ccpu[@]}") bld_ccpu_med=$(median "${bld_ccpu[@]}")
pack_mb=$(awk -v b="$pack_b" 'BEGIN{printf "%.1f", b/1e6}')
mbps() { awk -v b="$pack_b" -v s="$1" 'BEGIN{ if (s>0) printf "%.1f", b/1e6/s; else print 0 }'; }

# tpush LOG DIR URL REFSPEC: `git push --progress` from DIR with each
# output line stamped with its arrival time, between "<t> START" and
# "<t> END <status>" lines; the builder's "-----> Building" and
# "-----> Releasing" lines split the push into phases.
tpush() {
  echo "$EPOCHREALTIME START" >"$1"
  { timeout 300 git -C "$2" push --progress "$3" "$4" 2>&1 && echo "END 0" || echo "END $?"; } |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >>"$1"
}
# stamp LOG TEXT: arrival time of the first line containing TEXT.
stamp() { awk -v p="$2" 'index($0, p) {print $1; exit}' "$1"; }
tpush_ok() { grep -q '^[0-9.]* END 0$' "$1" || { cat "$1" >&2; die "push failed ($1)"; }; }

# Full push of the same repository to master of a Dockerfile app.
phase "full push: bench master (docker build of $repo_mb MB)"
s0=$(metric builder_build_duration_seconds_sum)
tpush "$tmp/full.log" "$src" "ssh://git@127.0.0.1:$SSH_PORT/bench.git" master
tpush_ok "$tmp/full.log"
full_build=$(sub "$(metric builder_build_duration_seconds_sum)" "$s0")
etcd_is /deis/apps/bench/release 1 || die "full push: /deis/apps/bench/release is not 1"
t0=$(stamp "$tmp/full.log" START) t1=$(stamp "$tmp/full.log" ' END ')
t_building=$(stamp "$tmp/full.log" '-----> Building') t_releasing=$(stamp "$tmp/full.log" '-----> Releasing')
[ -n "$t_building" ] && [ -n "$t_releasing" ] || { cat "$tmp/full.log" >&2; die "full push: no Building/Releasing lines"; }
full=$(sub "$t1" "$t0")
full_transport=$(sub "$t_building" "$t0") full_docker=$(sub "$t_releasing" "$t_building") full_release=$(sub "$t1" "$t_releasing")
# Its floor: the OpenSSH push (median above) plus the Docker CLI building
# the same tree with the legacy builder (which the builder's API call
# uses), without the cache (the builder just built the same layers).
phase "full push floor: docker build --no-cache of git archive"
t0=$(now)
git -C "$src" archive --format=tar HEAD | DOCKER_BUILDKIT=0 timeout 300 docker build -q --no-cache -t "$floor_image:1" - >"$tmp/floorbuild.log" 2>&1 \
  || { cat "$tmp/floorbuild.log" >&2; die "docker build (floor) failed"; }
t1=$(now)
docker_build=$(sub "$t1" "$t0")
full_floor=$(awk -v a="$floor_med" -v b="$docker_build" 'BEGIN{printf "%.3f", a+b}')

# Small app: push start -> /deis/apps/small/release = N (an etcd watch,
# each event stamped on arrival), the builder's "-----> Building" line, and
# the whole push; and the same commits pushed to the OpenSSH floor (a fresh
# bare repository each).
small=$tmp/small
mkdir -p "$small"
printf 'FROM %s\nCMD ["true"]\n' "$IMAGE" > "$small/Dockerfile"
git -C "$small" init -q -b master
mkfifo "$tmp/watch.fifo"
curl -sN -X POST $ETCD/v3/watch -d "{\"create_request\":{\"key\":\"$(b64 /deis/apps/small/release)\"}}" >"$tmp/watch.fifo" & wcurl=$!; pids+=($wcurl)
while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done <"$tmp/watch.fifo" >"$tmp/watch.log" & wloop=$!
until_ok 10 grep -q '"created":true' "$tmp/watch.log" || die "etcd watch on /deis/apps/small/release not created"
released() { grep -F "\"value\":\"$(b64 "$1")\"" "$tmp/watch.log" | head -n1 | cut -d' ' -f1; }
has_release() { [ -n "$(released "$1")" ]; }
rel=() tot=() blt=() tail_s=() pre=() sfl=()
for v in $(seq "$RUNS"); do
  phase "small app: push v$v"
  echo "v$v" > "$small/version.txt"
  git -C "$small" add -A
  git -C "$small" -c user.name=bench -c user.email=bench@bench.test commit -q -m "v$v"
  git init -q --bare "$tmp/smallfloor$v.git"
  tpush "$tmp/smallfloor$v.log" "$small" "ssh://root@127.0.0.1:$FLOOR_PORT$tmp/smallfloor$v.git" master
  tpush_ok "$tmp/smallfloor$v.log"
  sfl+=("$(sub "$(stamp "$tmp/smallfloor$v.log" ' END ')" "$(stamp "$tmp/smallfloor$v.log" START)")")
  s0=$(metric builder_build_duration_seconds_sum)
  log=$tmp/small$v.log
  tpush "$log" "$small" "ssh://git@127.0.0.1:$SSH_PORT/small.git" master
  tpush_ok "$log"
  until_ok 10 has_release "$v" || die "small v$v: the watch never saw /deis/apps/small/release = $v"
  trel=$(released "$v")
  t0=$(stamp "$log" START) t1=$(stamp "$log" ' END ') tb=$(stamp "$log" '-----> Building')
  [ -n "$tb" ] || { cat "$log" >&2; die "small v$v: no Building line"; }
  rel+=("$(sub "$trel" "$t0")") tot+=("$(sub "$t1" "$t0")") tail_s+=("$(sub "$t1" "$trel")") pre+=("$(sub "$tb" "$t0")")
  blt+=("$(sub "$(metric builder_build_duration_seconds_sum)" "$s0")")
done
kill $wcurl 2>/dev/null || true; wait $wcurl $wloop 2>/dev/null || true
pre_med=$(median "${pre[@]}") sfl_med=$(median "${sfl[@]}")
rel_med=$(median "${rel[@]}") tot_med=$(median "${tot[@]}") blt_med=$(median "${blt[@]}") tail_med=$(median "${tail_s[@]}")
builds=$(metric builder_build_duration_seconds_count | awk '{printf "%d", $1}')
sessions=$(metric builder_ssh_sessions | awk '{printf "%d", $1}')
warns=$(grep -c . "$tmp/builder.log" || true)
locks=$(curl -sf -m 10 -X POST $ETCD/v3/kv/range -d "{\"key\":\"$(b64 /deis/locks/push/)\",\"range_end\":\"$(b64 /deis/locks/push0)\",\"count_only\":true}" | grep -o '"count":"[0-9]*"' | grep -o '[0-9]*' || echo 0)
announced=no; etcd_is /deis/builder/host 127.0.0.1 && etcd_is /deis/builder/port $SSH_PORT && announced=yes

list() { local s; s=$(printf '%s, ' "$@"); echo "${s%, }"; }
{
  echo "## Builder vs OpenSSH"
  echo
  echo "One run (\`bench/builder/run.sh\`), all on 127.0.0.1, $(nproc) CPUs. The repository: $FILES files of $FILE_KB KiB from /dev/urandom plus a Dockerfile (\`FROM $IMAGE\`, \`COPY . /app\`), one commit; \`git push\` sends it as a $pack_mb MB pack. The floor is OpenSSH's sshd (private instance on port $FLOOR_PORT, root with HOME set to an empty directory so that root's ~/.bashrc is not run, \`git-receive-pack\` from PATH) receiving the same \`git push\` with the same client key. Every transport push goes to a fresh bare repository (floor) or a fresh app (builder: bench1..bench$RUNS, to \`refs/heads/transfer\`, which the builder stores without building), so each sends everything. Floor and builder alternate, $RUNS pushes each; medians. Ciphers negotiated by the OpenSSH client: builder $cipher_b, sshd $cipher_f."
  echo
  echo "| quantity | builder | OpenSSH floor | ratio | target |"
  echo "| --- | ---: | ---: | ---: | --- |"
  echo "| push of the $pack_mb MB pack, transport only, s | $bld_med | $floor_med | $push_ratio | ≤ 1.2: $(ok "$push_ratio <= 1.2") |"
  echo "| same, MB/s | $(mbps "$bld_med") | $(mbps "$floor_med") | | |"
  echo "| server CPU s per push (builder process + git it ran; sshd + git-receive-pack) | $bld_cpu_med | $floor_cpu_med | $(ratio "$bld_cpu_med" "$floor_cpu_med") | |"
  echo "| client CPU s per push (git push, pack-objects, ssh) | $bld_ccpu_med | $floor_ccpu_med | | |"
  echo "| full push to master of the Dockerfile app (docker build \`COPY . /app\` of $repo_mb MB, release), s; floor = OpenSSH push + \`docker build --no-cache\` of \`git archive\` | $full | $full_floor | $(ratio "$full" "$full_floor") | informational |"
  echo "| of which the build: builder_build_duration_seconds (hook to release) vs \`docker build\` alone, s | $full_build | $docker_build | $(ratio "$full_build" "$docker_build") | informational |"
  echo "| small Dockerfile app: push start → builder's \"-----> Building\" line; floor: whole push of the same commit to sshd, s | $pre_med | $sfl_med | $(ratio "$pre_med" "$sfl_med") | |"
  echo "| small Dockerfile app: push start → /deis/apps/small/release written, s | $rel_med | | | |"
  echo "| small Dockerfile app: whole \`git push\`, s | $tot_med | | | |"
  echo "| small Dockerfile app: release written → \`git push\` returns, s | $tail_med | | | |"
  echo "| small Dockerfile app: builder_build_duration_seconds per push, s | $blt_med | | | |"
  echo
  echo "Full push by the arrival of the builder's output lines at the client: push start → \"-----> Building\" (transfer, git's checks, hook) $full_transport s; → \"-----> Releasing\" (docker build) $full_docker s; → \`git push\` returns (release, prune, git's ref update) $full_release s."
  echo
  echo "Each run, s: builder transport $(list "${bld[@]}"); OpenSSH $(list "${floor[@]}"); server CPU builder $(list "${bld_cpu[@]}"), sshd $(list "${floor_cpu[@]}"). Small app v1..v$RUNS: to \"-----> Building\" $(list "${pre[@]}") (floor push $(list "${sfl[@]}")); to release $(list "${rel[@]}"); whole push $(list "${tot[@]}"); build metric $(list "${blt[@]}"). The small app's Dockerfile (\`FROM\`, \`CMD\`) has no \`COPY\`, so from v2 on Docker's cache answers the build. The release time is when an etcd watch on the key (curl on /v3/watch, started before the pushes) delivered the new value."
  echo
  echo "sshd's server CPU is mostly its own: when this bench was written, perf showed sshd's time in memmove and page faults (its channel buffers), and 51 MB through \`ssh host 'cat >/dev/null'\` cost sshd ~1.8 s of CPU with chacha20-poly1305, aes128-gcm or aes128-ctr alike, against ~0.7 s for git-receive-pack itself."
  echo
  echo "builder_build_duration_seconds_count after the run: $builds ($((RUNS+1)) expected: 1 full + $RUNS small); builder_ssh_sessions: $sessions; push locks left in etcd: $locks; /deis/builder/host and port announced: $announced; builder log lines at --log-level warn: $warns."
  [ "$warns" = 0 ] || { echo; echo '```'; head -n 5 "$tmp/builder.log" | cut -c1-300; echo '```'; }
} > "$out/builder.md"
{
  echo "chart,series,value,unit"
  echo "builder_push_50mb_s,builder,$bld_med,s"
  echo "builder_push_50mb_s,OpenSSH sshd,$floor_med,s"
  echo "builder_push_server_cpu_s,builder,$bld_cpu_med,s"
  echo "builder_push_server_cpu_s,OpenSSH sshd,$floor_cpu_med,s"
  echo "builder_full_push_s,builder (push + build + release),$full,s"
  echo "builder_full_push_s,OpenSSH push + docker build,$full_floor,s"
  echo "builder_small_push_s,push start to build start,$pre_med,s"
  echo "builder_small_push_s,OpenSSH push (no build),$sfl_med,s"
  echo "builder_small_push_s,push start to release,$rel_med,s"
  echo "builder_small_push_s,whole push,$tot_med,s"
  echo "builder_small_push_s,build (builder metric),$blt_med,s"
} > "$out/builder.csv"
phase done
cat "$out/builder.md"
