#!/usr/bin/env bash
# Install the test dependencies, build the compiled core, and run the whole suite twice:
# once on the compiled kernels and once on their pure-Python twins (FASTKONG_NO_EXTENSIONS=1).
# The tests start real peers: nginx and wrk (benchmark smoke test), redis-server (rate
# limiting), OpenLDAP's slapd with ldap-utils (ldap-auth) and Let's Encrypt's test CA pebble
# (acme) come from Debian packages, as do unshare and ip (a wildcard listener's test runs in a
# network namespace of its own, loopback only), installed here when missing and when we may.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in nginx:nginx wrk:wrk redis-server:redis-server slapd:slapd ldapmodify:ldap-utils \
    ip:iproute2 unshare:util-linux pebble:pebble; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] ||
        missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        # No system-wide slapd: the tests run their own, on loopback ports with a throwaway
        # config. Debian's slapd package would create a directory and start a daemon; this
        # answer skips the directory, and a policy-rc.d saying "not allowed" (101) keeps the
        # package scripts from starting any service (a machine's own policy is left as it is).
        echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
        policy=/usr/sbin/policy-rc.d
        added=
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 755 "$policy"
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
            added=1
        fi
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        if [ -n "$added" ]; then
            rm -f "$policy"
            trap - EXIT
        fi
    else
        echo "missing: ${missing[*]} (install with: sudo apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi

python -m pip install -q -e '.[test]'
python -c "import fastkong._core as c, fastkong._core.router as r; assert c.is_compiled(r), r.__file__; print('compiled:', r.__file__)"

ruff check fastkong tests bench
ruff format --check fastkong tests bench
mypy

# Two processes, a test module in one of them whole (its gateways are module fixtures): the
# integration modules mostly wait on the processes they start.
python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile
FASTKONG_NO_EXTENSIONS=1 python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/unit tests/property
