#!/usr/bin/env bash
# Re-resolve requirements.lock from every pyproject.toml (third-party packages only, with hashes).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --no-header \
  --no-emit-index-url --no-emit-find-links \
  pyproject.toml services/*/pyproject.toml tools/devstack/pyproject.toml -o requirements.lock
