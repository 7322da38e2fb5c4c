#!/usr/bin/env bash
# Third-party tools for bench/run.py, kept out of the project's venv:
#
#   $BENCH_VENV (default /work/venv-bench): ruff, flake8, torchfix, fixit.
#       TorchFix 0.7 pins libcst<1.6; in the project venv it would downgrade libcst.
#   $BENCH_VENV-flake8 (default /work/venv-bench-flake8): flake8 alone, at the
#       versions of the project venv. flake8 runs *every* installed plugin on every
#       file whatever --select says (TorchFix makes `flake8 --select E9` 6x slower),
#       so "plain flake8" needs a venv with no plugin in it; "flake8 + ALC" runs in
#       the project venv ($PROJECT_VENV, default /work/venv) with alloc-lint installed.
#
#   bash bench/setup_tools.sh
# Idempotent: a venv that already has its tools is left alone.
set -euo pipefail

VENV="${BENCH_VENV:-/work/venv-bench}"
FLAKE8_VENV="${VENV}-flake8"
PROJECT_VENV="${PROJECT_VENV:-/work/venv}"
PY="${PYTHON:-python3}"

ensure() {  # ensure VENV PKG...: create VENV and install the PKGs it lacks
    local venv="$1"; shift
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    local missing=()
    for spec in "$@"; do
        "$venv/bin/python" -m pip show -q "${spec%%==*}" >/dev/null 2>&1 || missing+=("$spec")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        "$venv/bin/python" -m pip install -q "${missing[@]}"
    fi
}

ensure "$VENV" ruff flake8 torchfix fixit

# Same flake8/pycodestyle/pyflakes/mccabe as the project venv, so that the only
# difference between the two flake8 runs is the alloc-lint plugin.
pins=(flake8)
if [ -x "$PROJECT_VENV/bin/python" ]; then
    mapfile -t pins < <("$PROJECT_VENV/bin/python" -m pip freeze 2>/dev/null \
        | grep -iE '^(flake8|pycodestyle|pyflakes|mccabe)==' || true)
    [ ${#pins[@]} -gt 0 ] || pins=(flake8)
fi
ensure "$FLAKE8_VENV" "${pins[@]}"

# Record what pip gave us (bench/run.py also prints versions into RESULTS.md).
for v in "$VENV" "$FLAKE8_VENV"; do
    echo "$v:" $("$v/bin/python" -m pip freeze 2>/dev/null \
        | grep -iE '^(ruff|flake8|torchfix|fixit|libcst|pycodestyle|pyflakes)==')
done
