# syntax=docker/dockerfile:1
#
# The portal-backup image: the `portal-backup` binary on distroless (glibc, CA certificates, no
# shell, no package manager), run as the distroless `nonroot` user (65532).
#
#   docker build -t ghcr.io/portal-backup/portal-backup:0.1.0 \
#     --build-arg FEATURES="aws-kms,postgres,s3" .
#
# FEATURES: the cargo features of the `portal-backup` crate to build in (aws-kms, gcp-kms,
# pkcs11, postgres, s3, gcs, azure; empty for local keys and file stores only).
# See docs/deploy.md for the Kubernetes manifests that run it.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG FEATURES=""
WORKDIR /src
# aws-lc-rs (the TLS stack's cryptography) builds C code: a C compiler and cmake; no OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# --locked: the image builds exactly what CI tested (Cargo.lock is committed).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portal-backup --features "${FEATURES}" \
    && install -D -m 0755 target/release/portal-backup /out/portal-backup

FROM gcr.io/distroless/cc-debian12:nonroot AS run
COPY --from=build /out/portal-backup /usr/local/bin/portal-backup
# The numeric id, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 65532:65532
# serve-webhook --listen 0.0.0.0:8080 (the webhook), --metrics-listen 0.0.0.0:9090 (metrics and
# probes), as in deploy/webhook.yaml.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/portal-backup"]
CMD ["--help"]
