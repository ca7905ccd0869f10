# Sourced by the scripts: make sure .venv exists and has dirgw installed.
# Usage: . scripts/_venv.sh [EXTRAS]   (e.g. "test")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
EXTRAS="${1:-}"
SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
STAMP=".venv/.dirgw-installed-${EXTRAS:-base}"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    echo "==> installing dirgw ($SPEC) into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$SPEC"
    touch "$STAMP"
fi
