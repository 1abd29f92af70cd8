# Helpers shared by bench/<component>/run.sh (sourced; $ETCD is the etcd
# client URL of the script's private etcd).
T0=$(date +%s); phase() { echo "[$(( $(date +%s) - T0 ))s] $*" >&2; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a-b}'; }
b64() { printf %s "$1" | base64 -w0; }
etcd_put() { curl -sf -m 10 -X POST "$ETCD/v3/kv/put" -d "{\"key\":\"$(b64 "$1")\",\"value\":\"$(b64 "$2")\"}" >/dev/null; }
# until_ok SECS CMD...: runs CMD every 0.05 s until it succeeds; fails after SECS.
until_ok() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.05
  done
}
# need CMD[:PACKAGE]...: installs from apt the package of each command
# missing (the package is named like the command unless given).
need() {
  local c pkgs=()
  for c in "$@"; do command -v "${c%%:*}" >/dev/null 2>&1 || pkgs+=("${c#*:}"); done
  [ ${#pkgs[@]} -eq 0 ] && return
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}
