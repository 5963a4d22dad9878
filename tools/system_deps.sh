#!/usr/bin/env bash
# The Debian packages the integration tests need: PostgreSQL (an MLflow tracking server and an
# Optuna storage on it) and Chromium (the MLflow UI in a real headless browser, via Playwright).
# Idempotent: does nothing when both are already installed. Uses sudo only when not root.
set -euo pipefail

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_chromium() { [ -x /usr/bin/chromium ]; }

if have_postgres && have_chromium; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO="sudo"
    else
        echo "system_deps: need root (or sudo) to install postgresql and chromium" >&2
        exit 1
    fi
fi

echo "system_deps: installing postgresql and chromium (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql chromium >/dev/null

have_postgres || { echo "system_deps: postgresql did not install (no initdb)" >&2; exit 1; }
have_chromium || { echo "system_deps: chromium did not install (no /usr/bin/chromium)" >&2; exit 1; }
