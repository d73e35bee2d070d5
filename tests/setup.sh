#!/usr/bin/env bash
# Make a fresh Debian 12 machine ready to run imageprep's tests and demo: the host tools
# for the disposable targets (apt) and a virtual environment with imageprep installed.
# Idempotent: a second run only checks.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: run as root (the test targets need mounts and network namespaces)" >&2
    exit 2
fi

bash tests/targets/host-deps.sh
# shellcheck checks every Linux step script (tests/unit/test_shellcheck.py).
if ! command -v shellcheck >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,azure,libvirt]'
