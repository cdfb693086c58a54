# One small image for every Crochet process; the command picks which one runs:
#   node dist/bin/proxy.mjs          the data plane (default)
#   node dist/bin/control-plane.mjs  the control plane (applies the SQL migrations in dist/migrations at start)
#   node dist/bin/reconcile.mjs      one reconciliation pass (`npm run reconcile`)
#   node dist/bin/demo-seller.mjs    the compose stack's demo seller
# The build stage bundles each entry with esbuild (scripts/bundle.ts); the runtime stage holds those bundles, the
# files they open at run time and Node: no installed dependencies (a stub @crochet/protocol holds the error docs),
# no TypeScript, no npm at run time.

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY protocol/package.json protocol/
COPY plugins/package.json plugins/
COPY control-plane/package.json control-plane/
COPY proxy/package.json proxy/
COPY dev-chains/package.json dev-chains/
COPY load-tests/package.json load-tests/
COPY client/package.json client/
# Only the runtime workspaces' dependencies, plus the root's tsx (which brings esbuild).
RUN npm ci --omit=dev --no-audit --no-fund -w protocol -w plugins -w control-plane -w proxy --include-workspace-root
COPY tsconfig.json ./
COPY protocol protocol
COPY plugins plugins
COPY control-plane control-plane
COPY proxy proxy
COPY scripts/bundle.ts scripts/demo-seller.ts scripts/
RUN node --import tsx scripts/bundle.ts /out

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /out ./
USER node
# 8080 the proxy's public port, 8081 the control plane; 9464/9465 their metrics listeners (on 127.0.0.1 unless
# CROCHET_METRICS_HOST / CONTROL_PLANE_METRICS_HOST say otherwise; never publish them).
EXPOSE 8080 8081 9464 9465
CMD ["node", "dist/bin/proxy.mjs"]
