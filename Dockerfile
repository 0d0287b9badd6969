# syntax=docker/dockerfile:1
#
# taskq container image: one binary, the role is chosen at run time by ROLE.
#
#   docker build -t taskq:local .
#   docker run --rm -p 8080:8080 taskq:local                      # ROLE=all on SQLite in /data
#   docker run --rm -e DATABASE_URL=postgres://... taskq:local migrate
#   docker run --rm -e ROLE=worker -e DATABASE_URL=postgres://... taskq:local
#
# Stage 1 compiles the dependencies on their own layer, so that editing src/
# rebuilds only the taskq crate. Stage 2 is distroless: glibc, libgcc, CA
# certificates and nothing else (no shell, no package manager), running as the
# numeric non-root user 65532. The build needs no database: migrations and the
# dashboard are embedded by the compiler.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# Dependency layer: the real manifest and lock file with stub targets. This
# layer is reused until Cargo.toml or Cargo.lock change. If Cargo.toml ever
# declares a build script or explicit [[bench]], [[test]] or [[example]]
# targets with a path, stub those files here as well.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
    && printf 'fn main() {}\n' > src/main.rs \
    && : > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# Application layer. COPY keeps the files' original modification times, which
# can be older than the stub build above; touching the crate roots makes sure
# cargo rebuilds taskq itself instead of reusing the stub binary.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin taskq \
    && install -D -m 0755 target/release/taskq /out/usr/local/bin/taskq \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

LABEL org.opencontainers.image.title="taskq" \
      org.opencontainers.image.description="Distributed background task processing backed by PostgreSQL" \
      org.opencontainers.image.licenses="MIT"

COPY --from=builder /out/usr/local/bin/taskq /usr/local/bin/taskq
# /data is the working directory and the only writable path the image needs:
# it holds the SQLite file when no DATABASE_URL is given (mount a volume there
# to keep it). With PostgreSQL the root filesystem can be read-only.
COPY --from=builder --chown=65532:65532 /out/data /data
WORKDIR /data

# Containers must listen on every interface; the binary's own default is
# 127.0.0.1. ROLE=all runs the server and a worker in one process.
ENV ROLE=all \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080

USER 65532:65532
EXPOSE 8080

# `taskq healthcheck` GETs http://127.0.0.1:$SERVER_PORT/livez and exits 0 on
# 200. Workers serve /livez too, so the same check fits every role.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["taskq", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/taskq"]
