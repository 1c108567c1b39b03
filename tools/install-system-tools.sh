#!/bin/sh
# Install the Debian packages named as arguments when their command is missing.
# Usage: tools/install-system-tools.sh curl openssl sslscan pebble chromium postgresql [nginx wrk]
# Each name is both the command looked for and the Debian package installed, except:
#   postgresql  the server programs (initdb, pg_ctl, postgres), which Debian keeps under
#               /usr/lib/postgresql/<major>/bin rather than on PATH; tests start private servers with them.
# pebble is the ACME test server the ACME tests start (/usr/bin/pebble, /usr/bin/pebble-challtestsrv);
# sslscan scans every version, suite and group of a listener (tests/integration/test_tls_scan.py).
# chromium is driven headless by Playwright in the inventory page's browser test (Playwright never
# downloads a browser of its own here).
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
