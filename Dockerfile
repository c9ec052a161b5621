# One image for every role of the product; docker-compose.yml picks the role with ROLES.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY . .
RUN npm run build:ui
ENV NODE_ENV=production HOST=0.0.0.0
# DATA_DIR (./data): the ingest worker's insert journal, the embedded engine's data. Owned by the user
# the product runs as; a volume mounted there starts with this ownership.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
CMD ["npm", "start"]
