#!/bin/sh
# Runs once, when the database volume is first initialised (the postgres/timescaledb
# images run /docker-entrypoint-initdb.d/*). Creates the read-only role the API and
# Grafana log in with; everything the migrations create later is readable by it
# through the default privileges. Migrate uses the owner ($POSTGRES_USER); ingest its own
# role, chargelift_ingest, which `chargelift-ingest migrate` makes (privileges.sql) and
# gives its password (INGEST_DB_PASSWORD).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" -v password="$READER_PASSWORD" <<'SQL'
CREATE ROLE chargelift_reader LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"db" TO chargelift_reader;
GRANT USAGE ON SCHEMA public TO chargelift_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
  GRANT SELECT ON TABLES TO chargelift_reader;
SQL
