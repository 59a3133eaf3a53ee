#!/usr/bin/env bash
# Builds ember's Python package (crates/ember-python, debug build) into the virtual environment
# python/.venv, with pytest, pyarrow and pandas (for toPandas), creating the environment when it
# is missing. Prints the environment's python. `pip install ./python` installs a release build
# instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" >&2
fi
# pyarrow and pandas: DataFrame.toPandas / toArrow (Structured Streaming's foreachBatch).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2" "pytest>=8,<10" \
  "pyarrow>=15,<22" "pandas>=2,<3" >&2
(cd "$here" && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --quiet >&2)
echo "$venv/bin/python"
