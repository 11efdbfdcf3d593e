#!/usr/bin/env bash
# The images compose.yaml names, made without Docker Hub (unreachable here): a Debian base from
# debootstrap, stand-ins tagged with the Docker Hub names (so compose.yaml and the Dockerfile
# keep their `image:` and `FROM` lines), and the app image from the Dockerfile as it is.
# Idempotent: an image already in the store is kept, a stand-in until its folder changes; the
# app image's build uses podman's layer cache. Run from the repository root, with
# CONTAINERS_CONF set (run.sh does both).
set -euo pipefail
here=deploy/test-deploy
work=${TEST_DEPLOY_WORK:-.data/test-deploy}
mkdir -p "$work"

have() { podman image exists "$1"; }

# current IMAGE FOLDER: the image was built from the folder's files as they are now (a label
# holds their hash), so an edited stand-in is built again.
digest() { cat "$1"/* | sha256sum | cut -c1-16; }
current() {
  [ "$(podman image inspect -f '{{index .Labels "skytide.context"}}' "$1" 2>/dev/null)" = "$(digest "$2")" ]
}

timed() {  # timed LABEL COMMAND...: runs it, then prints how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "    $label: $((SECONDS - start)) s"
}

base_image() {
  have localhost/debian:bookworm && return
  # The Debian mirror apt already uses on this machine (no host is named here).
  local mirror rootfs
  mirror=$(apt-cache policy | awk '$3 ~ /^bookworm\/main/ {print $2; exit}')
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/skytide-rootfs.XXXXXX")
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log"
  tar -C "$rootfs" -c . | podman import -q - localhost/debian:bookworm >/dev/null
  rm -rf "$rootfs"
}

python_image() {
  # This machine's extra CA certificates (a TLS-intercepting egress proxy signs PyPI's
  # certificate with one): pip inside the build trusts them too.
  local context=$work/python-context
  rm -rf "$context" && mkdir -p "$context/ca"
  cp "$here/standins/python/Containerfile" "$context/"
  cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
  current docker.io/library/python:3.11-slim "$here/standins/python" && return
  podman build -q --pull=never --label "skytide.context=$(digest "$here/standins/python")" \
    -t docker.io/library/python:3.11-slim "$context" >/dev/null
}

app_image() {
  # The Dockerfile as it is: its FROM resolves to the stand-in above. podman's layer cache keeps
  # every step before the first changed file.
  podman build -q --pull=never -t localhost/skytide:latest . >/dev/null
}

standin() {  # standin NAME TAG: deploy/test-deploy/standins/NAME, tagged as the Docker Hub image
  current "$2" "$here/standins/$1" && return
  podman build -q --pull=never --label "skytide.context=$(digest "$here/standins/$1")" \
    -t "$2" "$here/standins/$1" >/dev/null
}

echo "  images (kept between runs; \`make test-deploy-clean\` removes them)"
timed "base localhost/debian:bookworm (debootstrap)" base_image
timed "python:3.11-slim stand-in" python_image
timed "skytide:latest (the Dockerfile)" app_image
timed "redis:8 stand-in" standin redis docker.io/library/redis:8
timed "pgvector/pgvector:pg17 stand-in" standin postgres docker.io/pgvector/pgvector:pg17
timed "edoburu/pgbouncer:1.23.1 stand-in" standin pgbouncer docker.io/edoburu/pgbouncer:1.23.1
timed "prom/prometheus:v3.5.0 stand-in" standin prometheus docker.io/prom/prometheus:v3.5.0
