#!/usr/bin/env bash
# Every test of the project: the Rust workspace's (cargo test), then the Python package's
# (built into python/.venv, then pytest). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace
python="$(python/setup-venv.sh)"
"$python" -m pytest python/tests "$@"
