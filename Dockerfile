# jam as a FROM scratch image: the static musl binary and nothing else.
#
# The binary is cross-compiled on the host, not in a build stage: no base image can be pulled
# where jam is built, and a static binary needs none. `deploy/lab build` (or tests/run) stages it
# as dist/<arch>/jam first; the build context is only dist/ (see .dockerignore).
#
#   deploy/lab build                      # amd64, from target/x86_64-unknown-linux-musl
#   docker build --build-arg TARGETARCH=arm64 -t jam:arm64 .   # from dist/arm64/jam
#
# The legacy builder does not set TARGETARCH itself (BuildKit does), hence the default.
FROM scratch
ARG TARGETARCH=amd64
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="jam" \
      org.opencontainers.image.description="The networking lab's TCP time server: TIME gets JAM hh:mm:ss on port 45000" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/jam"

COPY dist/${TARGETARCH}/jam /jam

# nobody:nogroup; the port is above 1024, so no capability is needed to bind it.
USER 65534:65534
EXPOSE 45000
# jam handles SIGTERM itself as PID 1, so `docker stop` ends it at once and cleanly.
STOPSIGNAL SIGTERM
# No shell in the image: the probe is jam itself, exec form.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["/jam", "probe"]
ENTRYPOINT ["/jam"]
CMD ["serve"]
