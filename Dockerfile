# The `sluice` binary for docker-compose.yml (every component runs from it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY sluice.toml /etc/sluice/sluice.toml
# The analytics sink reads the event schemas from files, so new ones need no rebuild.
COPY schemas /etc/sluice/schemas
ENV SLUICE_REGISTRY=/etc/sluice/sluice.toml SLUICE_SCHEMAS_DIR=/etc/sluice/schemas SLUICE_HTTP_HOST=0.0.0.0
ENTRYPOINT ["sluice"]
