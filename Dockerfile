# syntax=docker/dockerfile:1
#
# passgate, and the example MCP server, as static CGO-free binaries on
# distroless, running as non-root.
#
#   docker build -t passgate .                          # passgate (the last stage)
#   docker build --target mcp-server -t mcp-example .   # the example MCP server
#
# passgate keeps its SQLite database in /var/lib/passgate unless DATABASE_URL
# names a PostgreSQL database. Ports: 8080 pages, OAuth endpoints and the
# HTTP check; 9191 Envoy ext_authz gRPC; 9464 metrics (keep it private).
#
# Base images are pinned by tag and digest (the multi-arch index), so a
# rebuild of the same commit starts from the same bytes; the tag says what
# the digest is. Bump both together, deliberately:
#   crane digest golang:1.26.8-bookworm
#   crane digest gcr.io/distroless/static-debian12:nonroot
# The Go patch release matches the toolchain the tests run on.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t passgate:0.1.0 .

FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/passgate ./cmd/passgate && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mcp-server ./examples/mcp-server && \
    mkdir -p /out/data

# The base of both shipped images, with the OCI image annotations they
# share (https://specs.opencontainers.org/image-spec/annotations/); each
# image adds its title and description.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/passgate/passgate" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot" \
      org.opencontainers.image.base.digest="sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab"

FROM runtime AS mcp-server
LABEL org.opencontainers.image.title="passgate-mcp-example" \
      org.opencontainers.image.description="The example MCP server passgate's documentation and tests protect"
COPY --from=build /out/mcp-server /usr/local/bin/mcp-server
ENV MCP_LISTEN=:8000
USER nonroot
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/mcp-server", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mcp-server"]

FROM runtime AS passgate
LABEL org.opencontainers.image.title="passgate" \
      org.opencontainers.image.description="OAuth 2.1 authorization server and ext_authz check for MCP servers"
COPY --from=build /out/passgate /usr/local/bin/passgate
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/passgate
ENV PASSGATE_DATA_DIR=/var/lib/passgate
# The binary's metrics default is loopback, which nothing outside the
# container reaches: listen on the container's network instead.
ENV PASSGATE_METRICS_LISTEN=:9464
USER nonroot
EXPOSE 8080 9191 9464
VOLUME ["/var/lib/passgate"]
# distroless has no curl: the binary checks its own /healthz on the
# PASSGATE_HTTP_LISTEN port (default 8080) on loopback.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/passgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/passgate"]
CMD ["serve"]
