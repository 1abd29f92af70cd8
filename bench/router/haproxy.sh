# haproxy_cfg LISTEN BACKEND [LOG_LINES]: the HAProxy configuration the
# router is compared with (sourced by run.sh and syscalls.sh): one thread
# per core, keep-alive to the backend, X-Forwarded-For, as docs/router.md
# "Performance" says.
haproxy_cfg() {
  cat <<HAP
global
  maxconn 4096
  nbthread $(nproc)
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
${3:-}
frontend f
  bind $1
  default_backend b
backend b
  http-reuse always
  server s1 $2
HAP
}
