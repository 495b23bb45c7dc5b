# syntax=docker/dockerfile:1
# Multi-stage build: a static, trimmed binary on distroless (nonroot).
# Base images are pinned by tag; pin by digest in your registry mirror.
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
EXPOSE 7300 7301
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/latch"]
CMD ["serve", "--db", "/data/latch.db", "--grpc-addr", "0.0.0.0:7300", "--http-addr", "0.0.0.0:7301"]
