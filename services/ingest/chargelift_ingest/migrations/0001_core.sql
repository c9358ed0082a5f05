-- chargelift core schema: works on plain PostgreSQL 15+ (TimescaleDB additions: 0002).
--
-- The narrow shape: one row per (charger, field, SamplingTime). Values live in the
-- column of their type; exactly one of them is set (or none: a JSON null).

CREATE TYPE operation_state AS ENUM (
    'unknown', 'off', 'idle', 'charging', 'scheduled_downtime', 'unscheduled_downtime'
);

CREATE TABLE readings (
    time        timestamptz      NOT NULL,   -- SamplingTime: when the edge read the value
    charger     text             NOT NULL,
    field       text             NOT NULL,
    value_num   double precision,
    value_text  text,
    value_bool  boolean,
    received_at timestamptz      NOT NULL DEFAULT now(),  -- when ingest stored it
    -- The idempotency key: redeliveries, replays and retained re-sends are absorbed.
    -- It includes time, as TimescaleDB requires of a unique index on a hypertable.
    CONSTRAINT readings_key PRIMARY KEY (charger, field, time),
    CONSTRAINT readings_one_value CHECK (num_nonnulls(value_num, value_text, value_bool) <= 1)
);

CREATE TABLE chargers (
    charger                 text PRIMARY KEY,
    first_seen              timestamptz NOT NULL,
    last_seen               timestamptz NOT NULL,
    availability            text CHECK (availability IN ('online', 'offline')),
    availability_changed_at timestamptz
);

-- The latest value of every charger and field: the shadow, as of the newest SamplingTime.
CREATE TABLE latest (
    charger     text             NOT NULL,
    field       text             NOT NULL,
    time        timestamptz      NOT NULL,
    value_num   double precision,
    value_text  text,
    value_bool  boolean,
    received_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (charger, field)
);

-- Messages that can never be stored, with why. Counted in ingest_dead_letters_total.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text        NOT NULL,
    payload     bytea       NOT NULL,
    reason      text        NOT NULL CHECK (reason IN (
        'bad_topic', 'bad_json', 'bad_envelope', 'non_finite', 'wrong_type',
        'unknown_field', 'too_large', 'future_time', 'db_rejected')),
    detail      text        NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
