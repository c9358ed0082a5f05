#!/bin/sh
# As the official eclipse-mosquitto entrypoint: as root, give /mosquitto to the broker's
# account (read-only mounts inside are skipped), then run the command.
set -e
if [ "$(id -u)" = 0 ] && [ -d /mosquitto ]; then
    chown -R mosquitto:mosquitto /mosquitto 2>/dev/null || true
fi
exec "$@"
