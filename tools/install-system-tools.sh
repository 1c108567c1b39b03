#!/bin/sh
# Install the Debian packages named as arguments when their command is missing.
# Usage: tools/install-system-tools.sh curl openssl [postgresql nginx wrk]
# `postgresql` stands for the server programs (initdb, pg_ctl, postgres), which Debian keeps
# under /usr/lib/postgresql/<major>/bin rather than on PATH; tests start private servers with them.
set -eu
missing=""
for tool in "$@"; do
    case "$tool" in
        postgresql)
            command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
                || missing="$missing $tool" ;;
        *)
            command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool" ;;
    esac
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
