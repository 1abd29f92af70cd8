#!/usr/bin/env bash
# Builds one image per daemon, FROM scratch with the static binary from
# `make build`, tagged localhost/deis-<name>:<version> and :latest. Nothing
# is pulled: scratch needs no base image. The names, localhost/deis-<name>,
# cannot be mistaken for (or pulled as) the public deis/* images.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
[ -x bin/router ] || make build
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# CA roots so TLS drains and routes can verify Papertrail & co.
mkdir -p "$ctx/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/" 2>/dev/null || true
# The builder runs the real git (and its pre-receive hook needs /bin/sh):
# the host's git with the libraries it links, git-core, and busybox as sh.
gitroot=$(mktemp -d)
trap 'rm -rf "$ctx" "$gitroot"' EXIT
if command -v git >/dev/null && [ -x /bin/busybox ]; then
  git=$(command -v git)
  for f in "$git" $(ldd "$git" | grep -o '/[^ ]*'); do
    mkdir -p "$gitroot$(dirname "$f")" && cp -L "$f" "$gitroot$f"
  done
  mkdir -p "$gitroot/usr/lib" "$gitroot/usr/share/git-core" "$gitroot/bin" "$gitroot/tmp"
  cp -a /usr/lib/git-core "$gitroot/usr/lib/"
  cp -a /usr/share/git-core/templates "$gitroot/usr/share/git-core/" 2>/dev/null || true
  cp /bin/busybox "$gitroot/bin/busybox" && ln -sf busybox "$gitroot/bin/sh"
  chmod 1777 "$gitroot/tmp"
fi
for name in etcd router logger logspout publisher builder controller agent deisctl; do
  [ -x "bin/$name" ] || { echo "images: bin/$name missing, skipped"; continue; }
  cp "bin/$name" "$ctx/$name"
  extra=""
  if [ "$name" = builder ]; then
    [ -x "$gitroot/bin/sh" ] || { echo "images: builder needs git and busybox-static on this host (scripts/setup.sh)"; exit 1; }
    cp -a "$gitroot" "$ctx/rootfs"
    extra="COPY rootfs/ /"
  fi
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY etc/ /etc/
$extra
COPY $name /$name
ENTRYPOINT ["/$name"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t "localhost/deis-$name:$version" -t "localhost/deis-$name:latest" "$ctx" >/dev/null
  rm -rf "$ctx/$name" "$ctx/rootfs"
  echo "images: localhost/deis-$name:$version"
done
