FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/patchbay ./cmd/patchbay

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates util-linux && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /nonexistent --shell /usr/sbin/nologin patchbay
COPY --from=build /out/patchbay /usr/local/bin/patchbay
COPY deploy/patchbay-entrypoint.sh /usr/local/bin/patchbay-entrypoint
# Starts as root only to hand the mounted secrets to the patchbay user; everything after runs as that user.
ENTRYPOINT ["/usr/local/bin/patchbay-entrypoint"]
CMD ["serve"]
