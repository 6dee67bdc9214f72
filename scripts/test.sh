#!/usr/bin/env bash
# Install the test dependencies, build the compiled core, and run the whole suite twice:
# once on the compiled kernels and once on their pure-Python twins (FASTKONG_NO_EXTENSIONS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install -q -e '.[test]'
python -c "import fastkong._core as c, fastkong._core.router as r; assert c.is_compiled(r), r.__file__; print('compiled:', r.__file__)"

ruff check fastkong tests bench
ruff format --check fastkong tests bench
mypy

python -m pytest -q -p no:cacheprovider
FASTKONG_NO_EXTENSIONS=1 python -m pytest -q -p no:cacheprovider tests/unit tests/property
