# The mtls-sidecar image: the sidecar (`run`), the admission webhook (`webhook`) and every other
# command of the CLI, as a non-root numeric user on a read-only root filesystem.
#   make image                      (builds the base first where node:24-bookworm-slim cannot be pulled)
#   docker build --network=host -t mtls-sidecar:0.1.0 .
# No `# syntax=` line: BuildKit would pull that frontend from a registry before building.
# Build arguments (all optional):
#   NODE_IMAGE           the Node base the build stages run on (default the official slim image;
#                        `make image` passes a locally built stand-in where no registry is reachable)
#   NPM_CONFIG_REGISTRY  the npm registry to install from (a private mirror)
#   NPM_CONFIG_CA        the PEM of the CA that registry's certificate chains to (TLS interception)
# Both npm settings exist in the deps stage only; the runtime image carries neither.
ARG NODE_IMAGE=node:24-bookworm-slim

# 1. Every dependency, from the registry: one `npm ci`, one download.
FROM ${NODE_IMAGE} AS deps
ARG NPM_CONFIG_REGISTRY
ARG NPM_CONFIG_CA
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the "node" devDependency would fetch a second Node; the image has one. None of
# the production dependencies has an install script or native code.
RUN npm ci --ignore-scripts --no-audit --no-fund

# 2. Compile TypeScript with the dev dependencies. No source maps: Node would not use them
# without --enable-source-maps, and stack traces are printed only with --debug.
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json --sourceMap false && chmod 0755 dist/main.js

# 3. The production dependencies: the same tree with the dev ones removed, offline (a stage of
# its own, so a change in src/ does not redo it).
FROM deps AS prod
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund --offline

# 4. The runtime root file system, distroless style: the Node binary and the shared libraries it
# links (found with ldd), the dynamic loader, a passwd/group entry for 65532. No shell, no
# package manager, no headers. TLS roots: Node's bundled Mozilla store, plus the system CA bundle
# where the base has one (node:*-slim has none).
FROM ${NODE_IMAGE} AS rootfs
RUN set -eu; \
    out=/rootfs; \
    mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/app" "$out/tmp"; \
    cp /usr/local/bin/node "$out/usr/local/bin/node"; \
    for lib in $(ldd /usr/local/bin/node | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do \
      mkdir -p "$out$(dirname "$lib")"; cp -L "$lib" "$out$lib"; \
    done; \
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"; fi; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"; \
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"; \
    printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"; \
    chmod 1777 "$out/tmp"; \
    chroot "$out" /usr/local/bin/node -e 'process.stdout.write(`runtime root: node ${process.version}\n`)'

# 5. Runtime: that root, the compiled code, the production dependencies and package.json (its
# "type": "module" makes Node load dist/ as ES modules).
FROM scratch
COPY --from=rootfs /rootfs/ /
COPY --from=build /src/package.json /app/package.json
COPY --from=prod /src/node_modules /app/node_modules
COPY --from=build /src/dist /app/dist
ENV NODE_ENV=production PATH=/usr/local/bin
WORKDIR /app
# Numeric, so runAsNonRoot can be verified by the kubelet; matches the injector's runAsUser.
USER 65532:65532
# Nothing is written at run time: certificates, config and CRLs are read from mounted volumes,
# logs go to stdout/stderr. Run with readOnlyRootFilesystem: true.
# 8443: the sidecar's TLS listener, or the webhook's HTTPS; 9901: the sidecar's admin port;
# 9902: the webhook's admin port. Outbound listeners bind loopback only and are not exposed.
EXPOSE 8443 9901 9902
ENTRYPOINT ["/usr/local/bin/node", "/app/dist/main.js"]
CMD ["--help"]
