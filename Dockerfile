# jam as a FROM scratch image, built from source: `docker compose up` on a fresh clone needs
# Docker alone, no Rust on the host.
#
#   docker compose up                                    # builds this, once, for all three machines
#   docker build -t jam .                                # the same image by hand
#   docker build --build-arg RUST_IMAGE=my-rust:1.95 .   # another builder image (JAM_RUST_IMAGE)
#
# Two stages: the official Rust image compiles the static musl binary, and the image itself is
# FROM scratch with that binary alone, as small as the binary. Where the Rust image cannot be
# had (an offline machine), `deploy/lab up` builds the binary on the host and makes the same
# image with deploy/Dockerfile.prebuilt, which has no build stage at all. That is a second file,
# not a stage here, because the legacy builder (docker build without BuildKit) builds every
# stage before the one asked for: tried here, `--target` on a prebuilt stage placed first still
# fails where its COPY of dist/ finds nothing in the default build, and placed after the Rust
# stage it still needs the Rust image. Two files keep each path to what it needs.
ARG RUST_IMAGE=rust:1.95-slim
# The legacy builder does not set BUILDPLATFORM and TARGETARCH (BuildKit does): build for amd64
# on amd64 unless told otherwise.
ARG BUILDPLATFORM=linux/amd64

# No registry here, so the Rust image cannot be pulled? Build jam on the host instead, which
# needs no base image: `deploy/lab up`. (Both builders show the lines before a failed FROM, so
# this says it where the error is.)
ARG NO_RUST_IMAGE="cannot pull RUST_IMAGE? build on the host instead: deploy/lab up"
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
ARG TARGETARCH=amd64
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY src src
# Cross-compiles for TARGETARCH with rust-lld (.cargo/config.toml): no cross toolchain is needed.
# The official image has no musl target, so it is added; a builder image that has it skips that.
RUN set -eu; \
    case "$TARGETARCH" in \
        amd64) target=x86_64-unknown-linux-musl ;; \
        arm64) target=aarch64-unknown-linux-musl ;; \
        *) echo "jam builds for amd64 and arm64, not $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    [ -d "$(rustc --print sysroot)/lib/rustlib/$target" ] || rustup target add "$target"; \
    cargo build --release --locked --target "$target"; \
    cp "target/$target/release/jam" /jam; \
    rm -rf target

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="jam" \
      org.opencontainers.image.description="The networking lab's TCP time server: TIME gets JAM hh:mm:ss on port 45000" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/jam"
COPY --from=build /jam /jam
# The papers that travel with the binary: jam's license and the notices of the crates in it.
COPY LICENSE THIRD-PARTY-NOTICES /
# nobody:nogroup; the port is above 1024, so no capability is needed to bind it.
USER 65534:65534
EXPOSE 45000
# jam handles SIGTERM itself as PID 1, so `docker stop` ends it at once and cleanly.
STOPSIGNAL SIGTERM
# No shell in the image: the probe is jam itself, exec form.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["/jam", "probe"]
ENTRYPOINT ["/jam"]
CMD ["serve"]
