FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/patchbay ./cmd/patchbay

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /nonexistent patchbay
COPY --from=build /out/patchbay /usr/local/bin/patchbay
USER patchbay
ENTRYPOINT ["/usr/local/bin/patchbay"]
CMD ["serve", "--config", "/etc/patchbay/patchbay.yaml"]
