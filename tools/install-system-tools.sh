#!/bin/sh
# Install the Debian packages named as arguments when their command is missing.
# Usage: tools/install-system-tools.sh curl openssl chromium [nginx wrk]
# (chromium: the browser test of the certificate inventory page drives /usr/bin/chromium with Playwright;
# Playwright never downloads a browser of its own here.)
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
