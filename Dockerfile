# One image for every role of the product; docker-compose.yml picks the role with ROLES.
# Node 24: an LTS line under maintenance (Node 20 reached end of life in April 2026).
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
# Dependencies' install scripts are not run; our own fixes to dependencies are (patches/, patch-package).
RUN npm ci --no-audit --no-fund --ignore-scripts && npx patch-package
COPY . .
RUN npm run build:ui
ENV NODE_ENV=production HOST=0.0.0.0
# DATA_DIR (./data): the ingest worker's insert journal, the embedded engine's data. Owned by the user
# the product runs as; a volume mounted there starts with this ownership.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
# Node itself is the container's process, in exec form, with the flags of `npm start`: `docker stop`'s
# SIGTERM reaches the product, which stops accepting, drains what it accepted, and exits 0. Under
# `npm start` the signal stopped npm and left node running until the SIGKILL.
CMD ["node", "--max-semi-space-size=64", "--import", "tsx", "bin/start.ts"]
