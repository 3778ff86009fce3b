# syntax=docker/dockerfile:1
#
# deploybot in a container: a build stage with the Rust toolchain and a small runtime.
# The binary carries SQLite and PostgreSQL's client library (libpq, with OpenSSL) itself.
#
#   docker build -t deploybot .
#   docker run -p 8080:8080 -v deploybot-data:/data --env-file deploybot.env \
#     -v "$PWD/deploybot.toml:/app/config/deploybot.toml:ro" \
#     -v "$PWD/github-app.pem:/run/secrets/github-app.pem:ro" deploybot
#
# deploybot.env holds the secrets, e.g. DEPLOYBOT_WEBHOOK_SECRET, DEPLOYBOT_PUBLIC_URL,
# GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_PATH=/run/secrets/github-app.pem and, for
# PostgreSQL, DATABASE_URL=postgres://...; docs/operations.md walks through it.
#
# The image holds no configuration, no token and no example: it reads
# /app/config/deploybot.toml (DEPLOYBOT_CONFIG), and started without one it exits with a
# message saying what to mount and which variables to set. Without DATABASE_URL the SQLite
# default lives on the /data volume. Mounted files must be readable by uid 10001.
# Give running deployments their grace period on stop: `docker stop --time 40` (the
# worker's default grace is 30 s; Docker's default is 10 s). Deploy commands that leave
# background processes behind want `docker run --init`, so orphans are reaped.

FROM rust:1-bookworm AS build
# libpq, OpenSSL and SQLite are built from source into the binary (the image already has
# the C compiler, perl and make that takes), so no -dev package is installed.
WORKDIR /src
# Only what the release build reads: the manifest, the sources, the embedded migrations,
# and the bench target the manifest declares.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# The registry and target caches survive between builds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin deploybot \
    && install -m 0755 target/release/deploybot /usr/local/bin/deploybot

FROM debian:bookworm-slim
# The binary needs no system library beyond libc (libpq, OpenSSL and SQLite are built in);
# ca-certificates: TLS to GitHub and to PostgreSQL with sslmode=verify-full.
# Debian's own package versions are not pinned: the archive only keeps the current one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 deploybot \
    && useradd --system --uid 10001 --gid deploybot --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin deploybot \
    && mkdir -p /data \
    && chown deploybot:deploybot /data
COPY --from=build /usr/local/bin/deploybot /usr/local/bin/deploybot
WORKDIR /app
# Mount your deploybot.toml (read-only) at /app/config/deploybot.toml. Nothing of the
# repository's config/ is copied: its laptop example has public pages and a published
# token.
ENV DATABASE_URL=sqlite:///data/deploybot.db \
    DEPLOYBOT_LISTEN=0.0.0.0:8080 \
    DEPLOYBOT_CONFIG=/app/config/deploybot.toml
VOLUME /data
# The deploybot user, by number, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8080
# No curl in the image: bash (always present in Debian) asks /healthz over /dev/tcp, on
# the port of DEPLOYBOT_LISTEN (its host unless that is a wildcard address).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "l=${DEPLOYBOT_LISTEN:-127.0.0.1:8080}; h=${l%:*}; case $h in 0.0.0.0|'[::]'|'') h=127.0.0.1;; esac; exec 3<>\"/dev/tcp/$h/${l##*:}\" && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["deploybot"]
CMD ["serve"]
