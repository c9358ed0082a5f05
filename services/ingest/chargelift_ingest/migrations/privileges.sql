-- Least privilege: each service logs in with a role of its own.
--
--   chargelift_ingest  ingest: reads everything, writes readings, state and dead
--                      letters, deletes only old dead letters (retention); no DDL, no
--                      TRUNCATE, never a superuser
--   chargelift_reader  Grafana and other readers: reads, writes nothing
--   chargelift_api     the API: reads, and inserts the commands it accepts (nothing
--                      else: no UPDATE, no DELETE, no other table)
--
-- Not a numbered migration: `chargelift-ingest migrate` runs this file after the
-- migrations every time (it is idempotent), because roles belong to the server, not to
-- the database: a database restored into a new server (scripts/restore.sh) has its
-- migrations recorded but neither the roles nor, without them, their grants.
--
-- The schema owner (the role `chargelift-ingest migrate` runs as) keeps DDL. Both roles
-- may log in but have no password here: on a password-authenticated server they cannot
-- log in until one is set (`chargelift-ingest migrate` sets it from INGEST_DB_PASSWORD
-- and READER_PASSWORD; compose does that).
DO $$
BEGIN
    CREATE ROLE chargelift_ingest LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE chargelift_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE chargelift_api LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

GRANT USAGE ON SCHEMA public TO chargelift_ingest, chargelift_reader, chargelift_api;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO chargelift_ingest, chargelift_reader, chargelift_api;
GRANT INSERT, UPDATE ON readings, latest, chargers, edges, dead_letters, commands, command_results TO chargelift_ingest;
GRANT INSERT ON commands TO chargelift_api;
GRANT DELETE ON dead_letters TO chargelift_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO chargelift_ingest;
-- What later migrations create is readable by both (writes are granted above, by name).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO chargelift_ingest, chargelift_reader, chargelift_api;
