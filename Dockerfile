# One image for every role of the product; docker-compose.yml picks the role with ROLES.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY . .
RUN npm run build:ui
ENV NODE_ENV=production HOST=0.0.0.0
USER node
CMD ["npm", "start"]
