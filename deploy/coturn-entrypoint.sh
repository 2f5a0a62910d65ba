#!/bin/sh
# Copies the mounted turnserver.conf (it holds turn.secret) and the TLS key into a private directory of the
# turnserver user, then runs coturn as that user with only CAP_NET_BIND_SERVICE (for TLS on 443).
set -eu
dir=/run/coturn
# `patchbay turn-config --cert-dir /run/coturn/certs` points cert= and pkey= here.
install -d -o turnserver -g turnserver -m 0700 "$dir" "$dir/certs"
install -o turnserver -g turnserver -m 0600 /etc/coturn/turnserver.conf "$dir/turnserver.conf"
for f in server.crt server.key; do
	install -o turnserver -g turnserver -m 0600 "/etc/coturn/certs/$f" "/run/coturn/certs/$f"
done
exec setpriv --reuid=turnserver --regid=turnserver --init-groups \
	--inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
	turnserver -c "$dir/turnserver.conf"
