# syntax=docker/dockerfile:1
# Multi-stage build: a static, trimmed binary on distroless (nonroot).
# Base images are pinned by tag, not digest: the Go image to an exact Go
# release, the runtime to distroless static on Debian 12, nonroot variant,
# which its publisher rebuilds for security updates. For a reproducible
# image, append @sha256:<digest> to each FROM (docs/operations.md says how).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/latch ./cmd/latch
# distroless has no shell to chown with: make the data directory here, owned
# by the nonroot user (65532), so that a fresh volume is writable.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/latch /usr/local/bin/latch
# The bbolt database lives on a volume owned by the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME ["/data"]
WORKDIR /data
# 7300: gRPC (AuthService, grpc.health.v1, reflection); 7301: HTTP (JWKS,
# /healthz, /readyz, /metrics).
EXPOSE 7300 7301
USER nonroot:nonroot
# Configuration is environment only, so that `docker run -e` can change any
# of it (a flag in CMD would win over the environment); a file mounted and
# named by LATCH_CONFIG works too. There is deliberately no issuer: the image
# refuses to start until LATCH_ISSUER is set to the URL clients know Latch by
# (docker run -e LATCH_ISSUER with e.g. https://auth.example.com). The container listens
# on every interface; plaintext there is allowed (LATCH_INSECURE_LISTEN) for
# a platform that terminates TLS in front of it. Setting LATCH_TLS_CERT and
# LATCH_TLS_KEY (and LATCH_TLS_CLIENT_CA for mutual TLS) to mounted files
# turns TLS on for both ports, and plaintext is then never served.
ENV LATCH_DB=/data/latch.db \
    LATCH_GRPC_ADDR=0.0.0.0:7300 \
    LATCH_HTTP_ADDR=0.0.0.0:7301 \
    LATCH_INSECURE_LISTEN=true
ENTRYPOINT ["/usr/local/bin/latch"]
CMD ["serve"]
