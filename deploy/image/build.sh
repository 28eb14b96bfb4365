#!/usr/bin/env bash
# `make image`: build the mtls-sidecar image with the Docker engine, host networking only.
#
# The build stages run FROM $NODE_IMAGE (default node:24-bookworm-slim). When that image is not
# on the machine and cannot be pulled (no container registry reachable), a local stand-in for it
# is built first with deploy/image/local-node-image.sh (Debian minbase + the official Node binary
# from the npm registry) and used instead: the Dockerfile's NODE_IMAGE build argument is the switch.
#
# Environment (all optional):
#   IMAGE                the tag to build (default mtls-sidecar:<version in package.json>)
#   NODE_IMAGE           the base to build on; set it to skip the pull/stand-in logic
#   LOCAL_NODE_IMAGE     the stand-in's tag (default local/node:24-bookworm-slim)
#   NPM_CONFIG_REGISTRY  the npm registry the build installs from (a private mirror)
#   NPM_CA_FILE          a PEM file: the CA that registry's certificate chains to (a proxy's
#                        interception CA, say; not a whole system bundle), passed as the
#                        NPM_CONFIG_CA build argument (it stays in the deps stage)
#   DOCKER               the docker CLI (default docker)
set -euo pipefail
cd "$(dirname "$0")/../.."

DOCKER=${DOCKER:-docker}
VERSION=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json | head -n1)
IMAGE=${IMAGE:-mtls-sidecar:${VERSION:?no version in package.json}}
OFFICIAL=node:24-bookworm-slim
LOCAL_NODE_IMAGE=${LOCAL_NODE_IMAGE:-local/node:24-bookworm-slim}

say() { printf '[image] %s\n' "$*" >&2; }

"$DOCKER" info >/dev/null 2>&1 || { say "the Docker engine does not answer (see docs/kubernetes.md, \"The image\")"; exit 1; }

ARGS=()
[[ -n ${NPM_CONFIG_REGISTRY:-} ]] && ARGS+=(--build-arg "NPM_CONFIG_REGISTRY=$NPM_CONFIG_REGISTRY")
if [[ -n ${NPM_CA_FILE:-} ]]; then
  [[ -r $NPM_CA_FILE ]] || { say "NPM_CA_FILE $NPM_CA_FILE is not readable"; exit 1; }
  # A build argument is one command-line argument, at most 128 KiB: the registry's CA, not a
  # whole system bundle.
  (($(wc -c <"$NPM_CA_FILE") < 120000)) || { say "NPM_CA_FILE $NPM_CA_FILE is over 120 kB: give the registry's CA only, not a system bundle"; exit 1; }
  ARGS+=(--build-arg "NPM_CONFIG_CA=$(cat "$NPM_CA_FILE")")
fi

if [[ -z ${NODE_IMAGE:-} ]]; then
  if "$DOCKER" image inspect "$OFFICIAL" >/dev/null 2>&1 || "$DOCKER" pull -q "$OFFICIAL" >/dev/null 2>&1; then
    NODE_IMAGE=$OFFICIAL
  else
    say "$OFFICIAL cannot be pulled here: using the local stand-in $LOCAL_NODE_IMAGE (built if missing)"
    DOCKER=$DOCKER bash deploy/image/local-node-image.sh "$LOCAL_NODE_IMAGE" 24
    NODE_IMAGE=$LOCAL_NODE_IMAGE
  fi
fi

ARGS+=(--network=host --build-arg "NODE_IMAGE=$NODE_IMAGE" -t "$IMAGE")
say "docker build $IMAGE FROM $NODE_IMAGE"
start=$SECONDS
"$DOCKER" build "${ARGS[@]}" .
# The classic builder leaves the build stages as <none> images: they are its cache (a rebuild
# with the same package-lock.json skips `npm ci`), so they are kept.
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE in $((SECONDS - start)) s: $((size / 1000000)) MB"
