-- TimescaleDB, when the server has it: hypertable, compression, continuous aggregate.
-- Plain PostgreSQL skips the DO block and gets a view of the same name and columns,
-- so every query works on both. Retention is set by `chargelift-ingest migrate` from
-- INGEST_RETENTION_DAYS (it is configuration, not schema).
--
-- The extension is used only when it is preloaded: being installed (listed in
-- pg_available_extensions) is not enough, CREATE EXTENSION fails without the preload.

DO $$
BEGIN
    IF current_setting('shared_preload_libraries', true) NOT LIKE '%timescaledb%' THEN
        RAISE NOTICE 'timescaledb not preloaded: plain PostgreSQL schema';
        CREATE VIEW readings_hourly AS
        SELECT date_trunc('hour', time) AS bucket, charger, field,
               min(value_num) AS min, max(value_num) AS max, avg(value_num) AS avg,
               (array_agg(value_num ORDER BY time DESC))[1] AS last,
               count(*) AS count
          FROM readings GROUP BY 1, 2, 3;
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;
    PERFORM create_hypertable('readings', 'time', chunk_time_interval => INTERVAL '1 day',
                              migrate_data => true);
    -- Compressed chunks keep one segment per charger and field: a history query of one
    -- field reads only its own segments.
    ALTER TABLE readings SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'charger, field',
        timescaledb.compress_orderby = 'time DESC'
    );
    PERFORM add_compression_policy('readings', INTERVAL '7 days');
    CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, charger, field,
           min(value_num) AS min, max(value_num) AS max, avg(value_num) AS avg,
           last(value_num, time) AS last, count(*) AS count
      FROM readings GROUP BY 1, 2, 3
      WITH NO DATA;
    PERFORM add_continuous_aggregate_policy('readings_hourly',
        start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes');
END
$$;

COMMENT ON TABLE readings IS
  'One row per charger, field and SamplingTime; a hypertable when TimescaleDB is present.';
