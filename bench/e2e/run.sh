#!/usr/bin/env bash
# End to end, as a developer sees it, on `make run` (bin/devplane) with the
# real deis, git, ssh and Docker:
#   1. git push of a small Dockerfile app: push start → first 200 from the
#      router, against the floor of the same work by hand (docker build +
#      docker run + first 200 from the container);
#   2. deis scale web=1→5 of a Procfile app: start → five containers
#      answering through the router.
# RUNS (default 3) of each; medians with the spread. Needs a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
source bench/lib.sh
make -s build >/dev/null
mkdir -p bench/out
RUNS=${RUNS:-3}
tmp=$(mktemp -d)
export HOME="$tmp/home" PATH="$PWD/bin:$PATH"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.test GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.test
mkdir -p -m 700 "$HOME/.ssh"
ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
export GIT_SSH_COMMAND="ssh -F /dev/null -i $HOME/.ssh/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR"
# Ports of their own, so that a `make run` beside it does not collide.
http=18080; ssh=18222
./bin/devplane --host 127.0.0.1 --etcd-port 18379 --etcd-peer-port 18380 --http-port $http --https-port 18443 --ssh-port $ssh \
  --health-port 18090 --syslog-port 18514 --logger-http-port 18088 --logspout-port 18000 --publisher-port 18091 \
  --builder-port 18223 --builder-health-port 18092 --controller-port 18001 --agent-port 18093 >"$tmp/devplane.log" 2>&1 &
plane=$!
floor_ids=()
cleanup() {
  kill -INT $plane 2>/dev/null; wait $plane 2>/dev/null || true
  for id in "${floor_ids[@]}"; do docker rm -f "$id" >/dev/null 2>&1 || true; done
  docker images -q 'bench-floor-*' | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
until_ok 60 grep -q "Ctrl-C stops everything" "$tmp/devplane.log" || { tail -30 "$tmp/devplane.log"; exit 1; }
until_ok 30 curl -sf -o /dev/null http://127.0.0.1:18001/healthz
deis register http://127.0.0.1:18001 --username=bench --password=bench-pw --email=bench@example.test >/dev/null
deis keys:add "$HOME/.ssh/id_ed25519.pub" >/dev/null
sleep 1 # the builder's key watch

# answers URL HOST: one request; true on 200.
answers() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' -H "Host: $2" "$1")" = 200 ]; }
dockerfile() { # a small Dockerfile app whose layer differs per run (no cache)
  printf 'FROM deis/busybox\nRUN mkdir -p /www && echo "%s" > /www/index.html\nEXPOSE 8000\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n' "$1" > Dockerfile
}
push_s=(); done_s=(); floor_s=(); scale_s=(); destroys=()
for i in $(seq "$RUNS"); do
  app="bench$i-$$"
  phase "run $i: push of a Dockerfile app"
  dir="$tmp/$app"; mkdir -p "$dir"; cd "$dir"
  git init -q -b master; dockerfile "push $app $(date +%s%N)"; git add Dockerfile; git commit -qm app
  deis create "$app" >/dev/null
  git remote set-url deis "ssh://git@127.0.0.1:$ssh/$app.git"
  t0=$(now)
  git push -q deis master >"$tmp/push.log" 2>&1 &
  pusher=$!
  until_ok 60 answers "http://127.0.0.1:$http/" "$app.localhost"
  push_s+=("$(sub "$(now)" "$t0")")
  wait $pusher || { cat "$tmp/push.log"; exit 1; }
  done_s+=("$(sub "$(now)" "$t0")")

  phase "run $i: the floor by hand"
  fdir="$tmp/floor$i"; mkdir -p "$fdir"; cd "$fdir"
  dockerfile "floor $app $(date +%s%N)"
  t0=$(now)
  DOCKER_BUILDKIT=0 docker build -q -t "bench-floor-$i-$$" . >/dev/null 2>&1
  id=$(docker run -d -p 127.0.0.1::8000 "bench-floor-$i-$$"); floor_ids+=("$id")
  port=$(docker port "$id" 8000/tcp | head -1 | sed 's/.*://')
  until_ok 60 answers "http://127.0.0.1:$port/" "x"
  floor_s+=("$(sub "$(now)" "$t0")")
  docker rm -f "$id" >/dev/null
  cd "$OLDPWD"

  phase "run $i: deis scale web=1→5"
  sapp="scale$i-$$"
  deis create "$sapp" --no-remote >/dev/null
  deis pull deis/busybox:latest -a "$sapp" --procfile='web: mkdir -p /www && echo "$HOSTNAME" > /www/index.html && exec httpd -f -p $PORT -h /www' >/dev/null
  t0=$(now)
  deis scale web=5 -a "$sapp" >/dev/null &
  scaler=$!
  declare -A seen=()
  deadline=$(( $(date +%s) + 120 ))
  while [ ${#seen[@]} -lt 5 ] && [ "$(date +%s)" -lt $deadline ]; do
    body=$(curl -s -m 2 -H "Host: $sapp.localhost" "http://127.0.0.1:$http/" || true)
    [ -n "$body" ] && [ "${#body}" -lt 100 ] && seen[$body]=1
    sleep 0.02
  done
  [ ${#seen[@]} -ge 5 ] || { echo "scale: only ${#seen[@]} of 5 answered"; exit 1; }
  scale_s+=("$(sub "$(now)" "$t0")")
  wait $scaler || { echo "deis scale web=5 failed"; exit 1; }
  unset seen
  # busybox httpd as PID 1 ignores SIGTERM: each destroy waits for its
  # stop timeout, so they go on in the background.
  (deis destroy -a "$sapp" --confirm="$sapp"; deis destroy -a "$app" --confirm="$app") >/dev/null 2>&1 &
  destroys+=($!)
  cd "$root"
done

stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.2f s (%.2f–%.2f)", v[int((NR+1)/2)], v[1], v[NR]}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio=$(awk -v a="$(median "${push_s[@]}")" -v b="$(median "${floor_s[@]}")" 'BEGIN{printf "%.2f", a/b}')
{
  echo "# End to end ($(date -u +%Y-%m-%d), $RUNS runs, median (min–max); \`bench/e2e/run.sh\`)"
  echo
  echo "| measured | platform | floor by hand | platform ÷ floor (target ≤ 1.5) |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| \`git push\` of a Dockerfile app → first 200 through the router | $(stats "${push_s[@]}") | $(stats "${floor_s[@]}") | $ratio |"
  echo "| \`git push\` → the push's own \`done\` (after the deploy's minReady) | $(stats "${done_s[@]}") | | |"
  echo "| \`deis scale web=1→5\` → all five answering through the router | $(stats "${scale_s[@]}") | | |"
  echo
  echo "Runs: push ${push_s[*]}; floor (docker build + docker run + first 200) ${floor_s[*]}; scale ${scale_s[*]}."
} > "$root/bench/out/e2e.md"
cat "$root/bench/out/e2e.md"
wait "${destroys[@]}" || true
