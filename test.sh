#!/usr/bin/env bash
# Every test of the project: the Rust workspace's (cargo test), then the Python package's
# (built into python/.venv, then pytest). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
# The object-storage tests run against moto's S3 server on 127.0.0.1 (started when it does not
# answer), with its fixed test credentials; nothing here reaches a real S3 account.
AWS_ENDPOINT_URL="$(.ci/s3-server)"
export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export EMBER_TEST_S3_BUCKET="${EMBER_TEST_S3_BUCKET:-ember-test}"
unset AWS_SESSION_TOKEN AWS_PROFILE
cargo test --workspace
python="$(python/setup-venv.sh)"
"$python" -m pytest python/tests "$@"
