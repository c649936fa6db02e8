# tenant-plane: build with the Rust image, run on a slim Debian of the same release (same glibc).
#
#   docker build -t tenant-plane .
#   docker run --rm -p 50051:50051 -v tenant-plane-data:/var/lib/tenant-plane tenant-plane

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder

# The .proto files are compiled by protox (pure Rust, no system protoc) and TLS is rustls (no
# OpenSSL). The C parts need the image's gcc, and libpg_query (the pg_query crate, which lints
# pushed tenant migrations) needs libclang for its bindings.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY migration ./migration
COPY client ./client
COPY proto ./proto
COPY src ./src
# Declared test and bench targets must exist for cargo to read the manifest.
COPY tests ./tests
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked \
 && install -m 0755 target/release/tenant-plane /usr/local/bin/tenant-plane

# ---- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tenant-plane \
 && useradd --system --uid 10001 --gid tenant-plane --no-create-home \
      --home-dir /var/lib/tenant-plane --shell /usr/sbin/nologin tenant-plane \
 && mkdir -p /var/lib/tenant-plane \
 && chown tenant-plane:tenant-plane /var/lib/tenant-plane

COPY --from=builder /usr/local/bin/tenant-plane /usr/local/bin/tenant-plane

# Listen on every interface inside the container (gRPC, and Prometheus metrics on their own
# port, which has no authentication: publish it only to the scraper's network), keep the
# embedded SQLite catalog (used when DATABASE_URL is unset) on the volume, and log one JSON
# object per line.
ENV TENANT_PLANE_LISTEN=0.0.0.0:50051 \
    TENANT_PLANE_METRICS_LISTEN=0.0.0.0:9464 \
    TENANT_PLANE_DATA_DIR=/var/lib/tenant-plane \
    TENANT_PLANE_LOG_FORMAT=json

# Numeric, so orchestrators can verify the image does not run as root.
USER 10001:10001
WORKDIR /var/lib/tenant-plane
VOLUME ["/var/lib/tenant-plane"]
EXPOSE 50051 9464

# `tenant-plane health` asks grpc.health.v1 and exits 0 only when the server answers SERVING.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["tenant-plane", "health", "--addr", "127.0.0.1:50051"]

ENTRYPOINT ["tenant-plane"]
CMD ["serve"]
