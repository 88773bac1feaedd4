#!/usr/bin/env bash
# CI step of feature `blob` (issue 15), called by one line of .ci/run: moving a store to Azure
# Blob Storage and back, checked against Azurite and the official Rust (0.9) and Python
# (azure-eventhub-checkpointstoreblob-aio 1.2.0) Blob stores. Makes a venv in target/blob-venv
# for the Python store, builds tests/blob-reference, starts a fresh Azurite (.ci/azurite.sh) and
# runs the `blob_move` tests of tests/it (the library and the `eh-checkpoints blob` commands).
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  if [ "${CI:-}" = "true" ]; then echo "$1 is needed for the Blob move tests" >&2; exit 1; fi
  echo "skipped: $1 not found (with CI=true this is an error)"; exit 0
}
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need "node and npm"
command -v python3 >/dev/null 2>&1 || need python3

venv=target/blob-venv
if ! "$venv/bin/python" -c 'import azure.eventhub.extensions.checkpointstoreblobaio' 2>/dev/null; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 lacks venv until python3-venv is installed.
    rm -rf "$venv"
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "azure-eventhub-checkpointstoreblob-aio==1.2.0" aiohttp
fi

cargo build --locked --quiet --manifest-path tests/blob-reference/Cargo.toml \
  --target-dir target/blob-reference

. .ci/azurite.sh
trap azurite_stop EXIT
azurite_install
azurite_start

EHCS_BLOB_ACCOUNT_URL="$AZURITE_ACCOUNT_URL" \
BLOB_REFERENCE="$PWD/target/blob-reference/debug/blob-reference" \
BLOB_PYTHON="$PWD/$venv/bin/python" \
EHCS_REQUIRE_AZURITE=1 \
  cargo test --locked --all-features --test it blob_move:: -- --nocapture
