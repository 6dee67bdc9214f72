#!/usr/bin/env bash
# Install the test dependencies, build the compiled core, and run the whole suite twice:
# once on the compiled kernels and once on their pure-Python twins (FASTKONG_NO_EXTENSIONS=1).
# The tests start real peers: nginx and wrk (benchmark smoke test) and redis-server (rate
# limiting) come from Debian packages, installed here when missing and when we may.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in nginx:nginx wrk:wrk redis-server:redis-server; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
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

python -m pytest -q -p no:cacheprovider
FASTKONG_NO_EXTENSIONS=1 python -m pytest -q -p no:cacheprovider tests/unit tests/property
