#!/bin/sh
# Starts as root: copies the mounted config (it holds secrets) and certificates, readable only by their host owner,
# into a private directory of the patchbay user, then drops to that user for good.
set -eu
dir=/run/patchbay
install -d -o patchbay -g patchbay -m 0700 "$dir" "$dir/certs"
install -o patchbay -g patchbay -m 0600 /etc/patchbay/patchbay.yaml "$dir/patchbay.yaml"
for f in ca.crt server.crt server.key; do
	install -o patchbay -g patchbay -m 0600 "/etc/patchbay/certs/$f" "$dir/certs/$f"
done
export PATCHBAY_CONFIG="$dir/patchbay.yaml" PATCHBAY_CERTS_DIR="$dir/certs"
exec setpriv --reuid=patchbay --regid=patchbay --init-groups --inh-caps=-all /usr/local/bin/patchbay "$@"
