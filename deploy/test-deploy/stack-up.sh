#!/usr/bin/env bash
# Start compose.yaml in stages, as `docker compose up` would, on podman 4.3: podman-compose
# cannot wait for `service_healthy` there (`podman wait --condition=healthy` needs 4.6), and
# without systemd nothing runs the health checks, so this runs them (`podman healthcheck run`)
# until each container is healthy, then starts the next stage with --no-deps. Grafana is left
# out: its image cannot be had here. Usage: stack-up.sh STACK_DIR (compose.yaml and .env there).
set -euo pipefail
stack=$1
project=${TEST_DEPLOY_PROJECT:-skytide-deploy-test}
compose=(${PODMAN_COMPOSE:-podman-compose} -p "$project" -f "$stack/compose.yaml")

# healthy SERVICE...: wait until every container of these services passes its health check.
healthy() {
  local service id deadline=$((SECONDS + ${TEST_DEPLOY_HEALTH_S:-120}))
  for service in "$@"; do
    for id in $(podman ps -aq --filter "label=io.podman.compose.project=$project" \
      --filter "label=com.docker.compose.service=$service"); do
      until podman healthcheck run "$id" >/dev/null 2>&1; do
        if [ "$(podman inspect -f '{{.State.Running}}' "$id")" != true ] || [ $SECONDS -gt $deadline ]; then
          echo "    $service is not healthy; its last log lines:" >&2
          podman logs --tail 30 "$id" >&2 || true
          return 1
        fi
        sleep 1
      done
    done
  done
}

stage() {  # stage LABEL COMMAND...
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "    $label: $((SECONDS - start)) s"
}

up() {  # up SERVICE...: podman-compose's own output goes to compose.log, shown if it fails
  "${compose[@]}" up -d --no-deps "$@" >>"$stack/compose.log" 2>&1 || {
    tail -20 "$stack/compose.log" >&2
    return 1
  }
}

migrated() {
  up migrate
  local id code
  id=$(podman ps -aq --filter "label=io.podman.compose.project=$project" --filter label=com.docker.compose.service=migrate)
  code=$(podman wait "$id")
  if [ "$code" != 0 ]; then
    echo "    migrate exited $code:" >&2
    podman logs --tail 30 "$id" >&2
    return 1
  fi
}

started() { up "$@" && healthy "$@"; }  # started SERVICE...: up, then healthy

stage "redis, postgres healthy" started redis postgres
stage "pgbouncer healthy" started pgbouncer
stage "migrate done" migrated
roles=(ingress enrich batcher agent sender scheduler)
stage "roles healthy (${roles[*]})" started "${roles[@]}"
stage "prometheus healthy" started prometheus
