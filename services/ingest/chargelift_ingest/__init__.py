"""chargelift ingest: MQTT readings into PostgreSQL/TimescaleDB, each stored exactly once."""
