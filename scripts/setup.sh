#!/usr/bin/env bash
# Installs and starts what the tests need on a fresh Debian machine that has
# only Go, git and apt: Docker's engine (Debian's docker.io), busybox-static
# (the base image is imported from it), git, the OpenSSH client, util-linux
# logger and curl. Safe to run again: it only does what is missing.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v git >/dev/null 2>&1 || need+=(git)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v logger >/dev/null 2>&1 || need+=(bsdutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Start a Docker engine unless one answers already (DOCKER_HOST or the
# local socket).
if ! docker info >/dev/null 2>&1; then
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    echo "setup: DOCKER_HOST=$DOCKER_HOST does not answer" >&2
    exit 1
  fi
  echo "setup: starting dockerd (log in /tmp/dockerd.log)"
  # iptables may be missing or unusable in a sandbox; published ports then go
  # through docker-proxy, which is all the tests use (they talk to loopback).
  nohup dockerd --iptables=false --ip6tables=false >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    echo "setup: dockerd did not start; last log lines:" >&2
    tail -n 20 /tmp/dockerd.log >&2 || true
    exit 1
  fi
fi
echo "setup: docker $(docker version --format '{{.Server.Version}}') ready"
# The builder's stack image (apps pushed without a Dockerfile build on it).
go run ./internal/stackimage && echo "setup: stack image deis/busybox:latest ready"
