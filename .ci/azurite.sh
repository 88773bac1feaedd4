# Azurite (the Azure Storage emulator) for the Blob reference runner. Sourced by .ci/run and
# .ci/with-azurite; needs node and npm.
#
#   azurite_install  installs Azurite $AZURITE_VERSION into target/azurite (once)
#   azurite_start    starts it on 127.0.0.1 and a free port, data in a new temp dir; sets
#                    azurite_pid, azurite_url (http://127.0.0.1:PORT) and
#                    AZURITE_ACCOUNT_URL ($azurite_url/devstoreaccount1)
#   azurite_stop     stops it and removes its data (safe to call twice, or from a trap)

AZURITE_VERSION=3.35.0
azurite_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
azurite_dir="$azurite_root/target/azurite"
azurite_pid=""
azurite_data=""
azurite_url=""

azurite_install() {
  if [ "$(node -p "require('$azurite_dir/node_modules/azurite/package.json').version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
    mkdir -p "$azurite_dir"
    npm install --prefix "$azurite_dir" --no-save --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
  fi
}

azurite_start() {
  azurite_data=$(mktemp -d)
  # Port 0: the system picks a free port, and Azurite logs the address it listens on.
  # --skipApiVersionCheck: azure_storage_blob 1.1 sends a newer API version than Azurite knows.
  node "$azurite_dir/node_modules/azurite/dist/src/blob/main.js" \
    --blobHost 127.0.0.1 --blobPort 0 --location "$azurite_data" \
    --disableTelemetry --skipApiVersionCheck >"$azurite_data/azurite.log" 2>&1 &
  azurite_pid=$!
  azurite_url=""
  for _ in $(seq 1 100); do
    azurite_url=$(grep -o 'successfully listens on http://127\.0\.0\.1:[0-9]*' "$azurite_data/azurite.log" | grep -o 'http://.*' || true)
    if [ -n "$azurite_url" ] || ! kill -0 "$azurite_pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if [ -z "$azurite_url" ]; then
    echo "Azurite did not start:" >&2; cat "$azurite_data/azurite.log" >&2; return 1
  fi
  AZURITE_ACCOUNT_URL="$azurite_url/devstoreaccount1"
  export AZURITE_ACCOUNT_URL
  echo "Azurite $AZURITE_VERSION (pid $azurite_pid) on $azurite_url"
}

azurite_stop() {
  if [ -n "$azurite_pid" ]; then
    kill "$azurite_pid" 2>/dev/null || true
    wait "$azurite_pid" 2>/dev/null || true
    azurite_pid=""
  fi
  if [ -n "$azurite_data" ]; then rm -rf "$azurite_data"; azurite_data=""; fi
}
