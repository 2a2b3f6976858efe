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

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/passgate ./cmd/passgate && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mcp-server ./examples/mcp-server && \
    mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS mcp-server
COPY --from=build /out/mcp-server /usr/local/bin/mcp-server
ENV MCP_LISTEN=:8000
USER nonroot
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/mcp-server", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mcp-server"]

FROM gcr.io/distroless/static-debian12:nonroot AS passgate
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
