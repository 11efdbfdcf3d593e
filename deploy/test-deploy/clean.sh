#!/usr/bin/env bash
# Remove what make test-deploy keeps between runs: its images and its tools.
set -uo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=$PWD/deploy/test-deploy/containers.conf
command -v podman >/dev/null || exit 0
deploy/test-deploy/stack-down.sh
podman rmi -f localhost/skytide:latest docker.io/library/redis:8 docker.io/pgvector/pgvector:pg17 \
  docker.io/edoburu/pgbouncer:1.23.1 docker.io/prom/prometheus:v3.5.0 \
  docker.io/library/python:3.11-slim localhost/debian:bookworm >/dev/null 2>&1
podman image prune -f >/dev/null
rm -rf "${TEST_DEPLOY_WORK:-.data/test-deploy}"
