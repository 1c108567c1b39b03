#!/bin/sh
# Install the Debian packages named as arguments when their command is missing.
# Usage: tools/install-system-tools.sh curl openssl pebble [nginx wrk]
# (each name is both the command looked for and the Debian package installed; pebble is the ACME
# test server the ACME tests start, with /usr/bin/pebble and /usr/bin/pebble-challtestsrv)
set -eu
missing=""
for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
