#!/usr/bin/env bash
# Install the baselines bench/local_overhead.py compares mpifarmer with:
#   GNU parallel (Debian package) and PyTaskFarmer 0.1.0 (PyPI, in its own venv).
# xargs (findutils), sh and bash are on every Debian machine already.
# Usage: bash bench/setup-baselines.sh [PTF_VENV]     (default PTF_VENV: /tmp/venv-ptf)
set -euo pipefail

ptf_venv=${1:-/tmp/venv-ptf}

if ! command -v parallel >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        apt-get install -y -qq parallel
    else
        echo "setup-baselines: GNU parallel is missing; install it (apt-get install -y parallel)" >&2
    fi
fi

if [ ! -x "$ptf_venv/bin/pytaskfarmer.py" ]; then
    python3 -m venv "$ptf_venv"
    "$ptf_venv/bin/pip" install -q pytaskfarmer==0.1.0
fi

command -v parallel >/dev/null && parallel --will-cite --version | head -1
"$ptf_venv/bin/pip" show pytaskfarmer | grep -E '^(Name|Version)'
