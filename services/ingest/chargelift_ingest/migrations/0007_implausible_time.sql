-- Issue 14, finding 10: a SamplingTime before INGEST_MIN_SAMPLING_TIME (default
-- 2000-01-01, a charger whose clock was never set says 1970 or 0001) is a dead letter,
-- not a reading that rewrites chargers.first_seen.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_reason_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_check CHECK (reason IN (
    'bad_topic', 'bad_json', 'bad_envelope', 'non_finite', 'wrong_type',
    'unknown_field', 'too_large', 'future_time', 'implausible_time', 'db_rejected'));
