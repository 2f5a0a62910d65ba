# Asterisk 22 from Debian sid: the same package the tests run (Debian bookworm has no Asterisk 22).
FROM debian:sid-slim
RUN apt-get -o Acquire::Check-Valid-Until=false update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends asterisk asterisk-modules ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && id asterisk
COPY asterisk-entrypoint.sh /usr/local/bin/asterisk-entrypoint
# The configuration is rendered by `patchbay asterisk-config` and mounted at /etc/asterisk; the entrypoint installs
# the certificates for the asterisk user and Asterisk drops to it.
ENTRYPOINT ["/usr/local/bin/asterisk-entrypoint"]
