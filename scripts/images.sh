#!/usr/bin/env bash
# Builds one image per daemon, FROM scratch with the static binary from
# `make build`, tagged deis/<name>:<version> and deis/<name>:latest. Nothing
# is pulled: scratch needs no base image.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
[ -x bin/router ] || make build
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# CA roots so TLS drains and routes can verify Papertrail & co.
mkdir -p "$ctx/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/" 2>/dev/null || true
for name in etcd router logger logspout publisher builder; do
  [ -x "bin/$name" ] || { echo "images: bin/$name missing, skipped"; continue; }
  cp "bin/$name" "$ctx/$name"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY etc/ /etc/
COPY $name /$name
ENTRYPOINT ["/$name"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t "deis/$name:$version" -t "deis/$name:latest" "$ctx" >/dev/null
  rm "$ctx/$name"
  echo "images: deis/$name:$version"
done
