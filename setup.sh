#!/bin/sh
# From a fresh clone: create .venv, install bundle into it, and build the example host vps1.
set -eu
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/bundle build vps1
echo
echo "bundle is installed in .venv: run .venv/bin/bundle --help (or activate the venv)"
