#!/bin/sh
# Starts as root: copies the mounted certificates (0600, owned by whoever made them on the host) to where the
# rendered configs point (--cert-dir /var/lib/asterisk/keys), owned by the asterisk user, then runs Asterisk,
# which drops to that user itself (-U/-G). No host uid has to match anything in the image.
set -eu
install -d -o asterisk -g asterisk -m 0750 /var/lib/asterisk/keys
for f in ca.crt server.crt server.key; do
	install -o asterisk -g asterisk -m 0600 "/run/patchbay-certs/$f" "/var/lib/asterisk/keys/$f"
done
exec asterisk -f -U asterisk -G asterisk "$@"
