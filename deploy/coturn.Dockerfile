# coturn for browsers on restrictive networks (TURN over UDP, TCP and TLS). Its turnserver.conf is rendered by
# `patchbay turn-config` with use-auth-secret and every private range denied except Patchbay's media addresses.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends coturn util-linux && rm -rf /var/lib/apt/lists/*
COPY coturn-entrypoint.sh /usr/local/bin/coturn-entrypoint
# Starts as root only to hand the mounted secret and key to the turnserver user; coturn then runs as that user,
# keeping only the right to bind a port below 1024 (TURN over TLS on 443).
ENTRYPOINT ["/usr/local/bin/coturn-entrypoint"]
