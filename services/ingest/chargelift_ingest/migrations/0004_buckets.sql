-- Per-bucket statistics, ONE query surface on both databases:
--
--     SELECT * FROM reading_buckets(charger, field, from, to, bucket [, origin])
--
-- returns, per bucket that starts in [date_bin(bucket, from, origin), to), the number of
-- readings and min / max / avg / sum / first / last of their numeric values. Buckets
-- are aligned with date_bin (origin: Monday 2000-01-03 00:00 UTC, as time_bucket does);
-- a bucket is always whole, also when `from` falls inside it.
--
-- Plain PostgreSQL computes it from `readings`. With TimescaleDB it reads the continuous
-- aggregates `readings_1m` / `readings_1h` (real-time: the materialised part plus the raw
-- rows newer than it) when the bucket is a whole number of hours / minutes and the origin
-- is aligned to that, and `readings` otherwise; the answers are the same.
--
-- Replaces 0003's `readings_hourly`, which had no sum and so could not be rolled up.

DO $$
DECLARE
    ts boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');
BEGIN
    IF ts THEN
        DROP MATERIALIZED VIEW IF EXISTS readings_hourly;
    ELSE
        DROP VIEW IF EXISTS readings_hourly;
    END IF;
END
$$;

-- The raw computation: the definition on plain PostgreSQL, and the fallback with TimescaleDB.
CREATE FUNCTION reading_buckets_raw(
    p_charger text, p_field text, p_from timestamptz, p_to timestamptz, p_bucket interval,
    p_origin timestamptz DEFAULT '2000-01-03 00:00:00+00'
) RETURNS TABLE (
    bucket timestamptz, count bigint, min double precision, max double precision,
    avg double precision, sum double precision, first double precision, last double precision
) LANGUAGE sql STABLE AS $$
    SELECT date_bin(p_bucket, r.time, p_origin) AS bucket,
           count(*), min(r.value_num), max(r.value_num), avg(r.value_num), sum(r.value_num),
           (array_agg(r.value_num ORDER BY r.time))[1],
           (array_agg(r.value_num ORDER BY r.time DESC))[1]
      FROM readings r
     WHERE r.charger = p_charger AND r.field = p_field
       AND r.time >= date_bin(p_bucket, p_from, p_origin)
       AND r.time < date_bin(p_bucket, p_to - interval '1 microsecond', p_origin) + p_bucket
     GROUP BY 1
     ORDER BY 1
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RAISE NOTICE 'timescaledb not present: reading_buckets computes from readings';
        CREATE FUNCTION reading_buckets(
            p_charger text, p_field text, p_from timestamptz, p_to timestamptz,
            p_bucket interval, p_origin timestamptz DEFAULT '2000-01-03 00:00:00+00'
        ) RETURNS TABLE (
            bucket timestamptz, count bigint, min double precision, max double precision,
            avg double precision, sum double precision, first double precision,
            last double precision
        ) LANGUAGE sql STABLE
        AS 'SELECT * FROM reading_buckets_raw(p_charger, p_field, p_from, p_to, p_bucket, p_origin)';
        RETURN;
    END IF;

    -- Real-time aggregates (materialized_only = false): rows newer than the last refresh
    -- are aggregated at query time, so a bucket is never missing its newest readings.
    -- n_num counts numeric values: avg = sum / n_num also after a roll-up.
    CREATE MATERIALIZED VIEW readings_1m
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(INTERVAL '1 minute', time) AS bucket, charger, field,
           count(*) AS count, count(value_num) AS n_num,
           min(value_num) AS min, max(value_num) AS max, sum(value_num) AS sum,
           first(value_num, time) AS first, last(value_num, time) AS last
      FROM readings GROUP BY 1, 2, 3
      WITH NO DATA;
    CREATE MATERIALIZED VIEW readings_1h
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, charger, field,
           count(*) AS count, count(value_num) AS n_num,
           min(value_num) AS min, max(value_num) AS max, sum(value_num) AS sum,
           first(value_num, time) AS first, last(value_num, time) AS last
      FROM readings GROUP BY 1, 2, 3
      WITH NO DATA;
    -- The refresh windows end well inside the shortest allowed retention (4 days, checked
    -- by `chargelift-ingest migrate`): a refresh never recomputes a bucket whose raw
    -- rows were already dropped, so the aggregates outlive the raw data.
    PERFORM add_continuous_aggregate_policy('readings_1m',
        start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
        schedule_interval => INTERVAL '5 minutes');
    PERFORM add_continuous_aggregate_policy('readings_1h',
        start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes');

    CREATE FUNCTION reading_buckets(
        p_charger text, p_field text, p_from timestamptz, p_to timestamptz,
        p_bucket interval, p_origin timestamptz DEFAULT '2000-01-03 00:00:00+00'
    ) RETURNS TABLE (
        bucket timestamptz, count bigint, min double precision, max double precision,
        avg double precision, sum double precision, first double precision,
        last double precision
    ) LANGUAGE plpgsql STABLE AS $fn$
    DECLARE
        secs double precision := extract(epoch FROM p_bucket);
        origin_secs double precision := extract(epoch FROM p_origin);
        source regclass;
        lo timestamptz := date_bin(p_bucket, p_from, p_origin);
        hi timestamptz := date_bin(p_bucket, p_to - interval '1 microsecond', p_origin) + p_bucket;
    BEGIN
        IF secs >= 3600 AND secs::bigint % 3600 = 0 AND origin_secs::bigint % 3600 = 0
           AND origin_secs = trunc(origin_secs) THEN
            source := 'readings_1h';
        ELSIF secs >= 60 AND secs::bigint % 60 = 0 AND origin_secs::bigint % 60 = 0
              AND origin_secs = trunc(origin_secs) AND secs = trunc(secs) THEN
            source := 'readings_1m';
        ELSE
            RETURN QUERY SELECT * FROM reading_buckets_raw(
                p_charger, p_field, p_from, p_to, p_bucket, p_origin);
            RETURN;
        END IF;
        RETURN QUERY EXECUTE format($q$
            SELECT date_bin($5, a.bucket, $6) AS b,
                   sum(a.count)::bigint, min(a.min), max(a.max),
                   sum(a.sum) / nullif(sum(a.n_num), 0), sum(a.sum),
                   first(a.first, a.bucket), last(a.last, a.bucket)
              FROM %s a
             WHERE a.charger = $1 AND a.field = $2 AND a.bucket >= $3 AND a.bucket < $4
             GROUP BY 1
             ORDER BY 1
        $q$, source) USING p_charger, p_field, lo, hi, p_bucket, p_origin;
    END
    $fn$;
END
$$;

COMMENT ON FUNCTION reading_buckets(text, text, timestamptz, timestamptz, interval, timestamptz) IS
  'Per-bucket count, min, max, avg, sum, first, last of one charger''s field: the API''s one '
  'surface for aggregates (continuous aggregates with TimescaleDB, raw rows otherwise).';
