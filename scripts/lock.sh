#!/usr/bin/env bash
# Re-resolve the hash-pinned lock files (third-party packages only):
#   requirements-bootstrap.lock       uv itself, which `make venv` installs first (every platform)
#   requirements.lock                 everything for development (.venv): services + tools
#   docker/requirements-runtime.lock  what the container images install: the services'
#                                     runtime dependencies and setuptools, resolved for every
#                                     Python >= 3.11 (the images may use a newer Python)
# tests/unit/test_deploy_files.py checks that both pin the same versions.
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--quiet --generate-hashes --python-version 3.11 --no-header --no-emit-index-url --no-emit-find-links)
.venv/bin/uv pip compile "${common[@]}" --universal \
  requirements-bootstrap.in -o requirements-bootstrap.lock
services=(services/contract services/runtime services/edge services/certs services/simulator services/poller services/ingest services/api services/ocpp services/bridge)
.venv/bin/uv pip compile "${common[@]}" \
  pyproject.toml "${services[@]/%//pyproject.toml}" tools/devstack/pyproject.toml -o requirements.lock
.venv/bin/uv pip compile "${common[@]}" --universal \
  "${services[@]/%//pyproject.toml}" docker/build-requirements.in -o docker/requirements-runtime.lock
# The edge poller alone, for a Raspberry Pi without Docker (scripts/install-poller.sh).
.venv/bin/uv pip compile "${common[@]}" --universal \
  services/contract/pyproject.toml services/runtime/pyproject.toml services/edge/pyproject.toml services/poller/pyproject.toml docker/build-requirements.in \
  -o deploy/raspberry-pi/requirements-poller.lock
