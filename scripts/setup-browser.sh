#!/usr/bin/env bash
# Installs what the demo page and the browser tests need, idempotently (only
# what is missing):
#
#   * Chromium from Debian (/usr/bin/chromium), driven headless by the tests;
#   * QEMU (qemu-system-x86) from Debian, the console behind the demo's ESXi
#     stand-in. Optional: if it cannot be installed the demo and the tests use
#     the built-in RFB test-pattern server instead, and say so;
#   * `npm ci` in demo/: noVNC (@novnc/novnc) and VMware's HTML console
#     (opennebula-wmks 2.1.4, which packages wmks 2.1.0), both served to
#     the page, and playwright-core (drives the Chromium above; it never
#     downloads a browser of its own).
#
# Called by `make test` before the test suite. Kept apart from
# scripts/setup.sh so the two can change independently.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# shellcheck source=lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"

if [ ! -x /usr/bin/chromium ]; then
  echo "setup-browser: installing chromium (Debian)"
  apt_install chromium
fi
/usr/bin/chromium --version 2>/dev/null

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  echo "setup-browser: installing qemu-system-x86 (Debian; optional)"
  if ! apt_install qemu-system-x86; then
    echo "setup-browser: WARNING: qemu-system-x86 could not be installed;" \
      "the demo console falls back to the built-in RFB test pattern" >&2
  fi
fi
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
  qemu-system-x86_64 --version | head -n 1
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "setup-browser: installing npm (Debian)"
  apt_install nodejs npm
fi

# npm ci only when node_modules was not installed from this very lock (the
# stamp is a copy of the lock taken after the last successful npm ci).
DEMO="$ROOT/demo"
STAMP="$DEMO/node_modules/.mksgate-installed-lock.json"
if ! cmp -s "$DEMO/package-lock.json" "$STAMP" \
  || [ ! -f "$DEMO/node_modules/@novnc/novnc/core/rfb.js" ] \
  || [ ! -f "$DEMO/node_modules/opennebula-wmks/dist/wmks.js" ] \
  || [ ! -f "$DEMO/node_modules/playwright-core/package.json" ]; then
  echo "setup-browser: npm ci in demo/"
  (cd "$DEMO" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$DEMO/package-lock.json" "$STAMP"
fi
echo "setup-browser: noVNC $(node -p 'require("./demo/node_modules/@novnc/novnc/package.json").version')," \
  "wmks (opennebula-wmks) $(node -p 'require("./demo/node_modules/opennebula-wmks/package.json").version')," \
  "playwright-core $(node -p 'require("./demo/node_modules/playwright-core/package.json").version')"
