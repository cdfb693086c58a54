# One image for both planes; the command picks which one runs.
FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY protocol/package.json protocol/
COPY plugins/package.json plugins/
COPY control-plane/package.json control-plane/
COPY proxy/package.json proxy/
COPY load-tests/package.json load-tests/
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY protocol protocol
COPY plugins plugins
COPY control-plane control-plane
COPY proxy proxy
USER node
CMD ["node", "--import", "tsx", "proxy/src/main.ts"]
