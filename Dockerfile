# syntax=docker/dockerfile:1
# The mtls-sidecar image: the sidecar (`run`), the admission webhook (`webhook`) and every other
# command of the CLI, as a non-root numeric user on a read-only root filesystem.
#   docker build -t mtls-sidecar:0.1.0 .
ARG NODE_IMAGE=node:24-bookworm-slim

# 1. Compile TypeScript with the dev dependencies.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the "node" devDependency would fetch a second Node; the image has one.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

# 2. Production dependencies only (none of them has an install script or native code).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# 3. Runtime: Node, the compiled code and its dependencies; no package manager, no compiler.
FROM ${NODE_IMAGE}
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
WORKDIR /app
ENV NODE_ENV=production
# package.json says "type": "module", which Node needs to load dist/ as ES modules.
COPY --from=build /src/package.json ./package.json
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
RUN chmod 0755 /app/dist/main.js && ln -s /app/dist/main.js /usr/local/bin/mtls-sidecar
# Numeric, so runAsNonRoot can be verified by the kubelet; matches the injector's runAsUser.
USER 65532:65532
# Nothing is written at run time: certificates, config and CRLs are read from mounted volumes,
# logs go to stdout/stderr. Run with readOnlyRootFilesystem: true.
EXPOSE 8443 9901
ENTRYPOINT ["mtls-sidecar"]
CMD ["--help"]
