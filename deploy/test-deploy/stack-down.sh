#!/usr/bin/env bash
# Remove the test stack by its compose project label: the roles first (PostgreSQL and Redis have
# dependents), then everything else, its volumes and its network. `podman-compose down -v`
# removes in the wrong order on podman 4.3 and leaves scaled replicas and the network behind.
# Safe to run when nothing is up (run.sh's trap runs it on every exit).
set -uo pipefail
project=${TEST_DEPLOY_PROJECT:-skytide-deploy-test}
label=io.podman.compose.project=$project
all=$(podman ps -aq --filter "label=$label")
# Every container of the project, roles first (a filter podman cannot apply is applied here).
ordered=()
for id in $all; do
  case $(podman inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$id" 2>/dev/null) in
    redis | postgres | pgbouncer) ;;
    *) ordered+=("$id") ;;
  esac
done
for id in $all; do
  case " ${ordered[*]} " in *" $id "*) ;; *) ordered+=("$id") ;; esac
done
[ ${#ordered[@]} -gt 0 ] && podman rm -f -t 5 "${ordered[@]}" >/dev/null
volumes=$(podman volume ls -q --filter "label=$label")
[ -n "$volumes" ] && podman volume rm -f $volumes >/dev/null
networks=$(podman network ls -q --filter "label=$label")
[ -n "$networks" ] && podman network rm -f $networks >/dev/null
exit 0
