#!/usr/bin/env bash
# make test-deploy: the image built and compose.yaml started for real, in rootful podman on a
# Debian 12 machine (deploy/test-deploy/README.md says why each piece is there):
#   install what is missing, build the images (kept between runs), start the stack in stages,
#   run the checks of tests/stack (a webhook answered, a role scaled, a replica stopped and
#   drained, `skytide eval` in the image), then tear it all down, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=deploy/test-deploy
export CONTAINERS_CONF=$PWD/$here/containers.conf
export TEST_DEPLOY_WORK=${TEST_DEPLOY_WORK:-.data/test-deploy}
export TEST_DEPLOY_PROJECT=${TEST_DEPLOY_PROJECT:-skytide-deploy-test}
start=$SECONDS

finish() {
  local code=$?
  if [ "$code" != 0 ] && command -v podman >/dev/null; then
    # Every container's state and log, for whoever reads the failure.
    mkdir -p "$TEST_DEPLOY_WORK/logs"
    podman ps -a --filter "label=io.podman.compose.project=$TEST_DEPLOY_PROJECT" \
      --format '{{.Names}} {{.Status}}' >&2 || true
    for name in $(podman ps -a --filter "label=io.podman.compose.project=$TEST_DEPLOY_PROJECT" --format '{{.Names}}'); do
      podman logs "$name" >"$TEST_DEPLOY_WORK/logs/$name.log" 2>&1 || true
    done
    echo "container logs: $TEST_DEPLOY_WORK/logs/" >&2
  fi
  echo "==> tear down (containers, volumes, network)"
  local began=$SECONDS
  command -v podman >/dev/null && "$here/stack-down.sh"
  echo "    $((SECONDS - began)) s"
  if [ "$code" = 0 ]; then
    echo "make test-deploy: passed in $((SECONDS - start)) s"
  else
    echo "make test-deploy: FAILED (exit $code) after $((SECONDS - start)) s" >&2
  fi
  exit "$code"
}
trap finish EXIT
trap 'exit 130' INT TERM

echo "==> install: podman, runc, netavark, debootstrap (apt), podman-compose (PyPI)"
"$here/install.sh"
"$here/stack-down.sh"  # what an interrupted run left behind
echo "==> images"
"$here/images.sh"
.venv/bin/python -m tests.stack
