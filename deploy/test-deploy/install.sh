#!/usr/bin/env bash
# What `make test-deploy` needs on a Debian 12 machine, installed when missing: rootful podman
# with runc (crun refuses this VM's hybrid cgroups), netavark and aardvark-dns (the compose
# network and DNS by service name; netavark calls iptables, which a minimal Debian lacks),
# debootstrap (the base image), and podman-compose from PyPI
# in its own venv (Debian's 1.0.3 is older than the one this was tried with).
set -euo pipefail
work=${TEST_DEPLOY_WORK:-.data/test-deploy}
packages=(podman runc netavark aardvark-dns iptables debootstrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test-deploy needs root on Debian 12 to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "  apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "make test-deploy runs rootful podman: run it as root" >&2
  exit 1
fi
if [ ! -x "$work/tools/bin/podman-compose" ]; then
  echo "  podman-compose 1.6.0 into $work/tools"
  python3 -m venv "$work/tools"
  "$work/tools/bin/pip" install -q podman-compose==1.6.0
fi
