#!/usr/bin/env bash
# PostgreSQL's server binaries for the tests marked `postgres` (tests/postgres_server.py runs its own
# throwaway cluster; no service is started or used). Installed with apt-get when missing and we are root.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing PostgreSQL (apt-get install postgresql) for the tests marked postgres" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
else
  echo "PostgreSQL's initdb not found and cannot install it (not root, or no apt-get): the tests marked" \
       "postgres will be skipped (failed under CI=true); install the 'postgresql' package" >&2
fi
