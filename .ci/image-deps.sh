#!/usr/bin/env bash
# What the image smoke test needs: Debian's Docker engine (host networking only; the test starts
# dockerd itself with --bridge=none --iptables=false) and debootstrap (the stand-in base image).
# Installed only when missing, and only where we may (root with apt-get); elsewhere the smoke test
# says in one line that the engine cannot start and counts itself skipped.
set -euo pipefail
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # The package's postinst must not start dockerd with its defaults (a bridge, iptables rules).
  if ! grep -q 'exit 101' /usr/sbin/policy-rc.d 2>/dev/null; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
  fi
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "image smoke test: cannot install ${need[*]} here (not root, or no apt-get)"
fi
