-- Dead letters stored once (issue 14, finding 9; docs/ingest.md, "Dead letters: quota,
-- retention, stored once").
--
-- MQTT gives a message no identity that survives a session, so the natural key of a dead
-- letter is what it is: sha256(topic, payload) of the message as received (before the
-- stored payload is truncated). The same bytes on the same topic again -- a redelivery
-- after ingest died between its COMMIT and its PUBACK, a replay, a device repeating
-- itself -- add no row: `times_seen` counts them and `last_received_at` says when the
-- newest came. `received_at` stays the first arrival (retention deletes by it).
--
-- key = sha256(int4 big-endian length of the UTF-8 topic || UTF-8 topic || payload),
-- computed by ingest (chargelift_ingest.deadletters.dead_letter_key). It is NULL only for
-- rows written by hand; those are not deduplicated (a unique index allows many NULLs).

ALTER TABLE dead_letters
    ADD COLUMN key bytea,
    ADD COLUMN times_seen integer NOT NULL DEFAULT 1 CHECK (times_seen >= 1),
    ADD COLUMN last_received_at timestamptz;

UPDATE dead_letters
   SET key = sha256(int4send(octet_length(convert_to(topic, 'UTF8')))
                    || convert_to(topic, 'UTF8') || payload),
       last_received_at = received_at;

-- Duplicates stored before this migration become one row, counted, spanning the first
-- and the last arrival.
WITH dup AS (
    SELECT key, min(id) AS keep, count(*) AS n,
           min(received_at) AS first, max(received_at) AS last
      FROM dead_letters GROUP BY key HAVING count(*) > 1
), merged AS (
    UPDATE dead_letters d
       SET times_seen = dup.n, received_at = dup.first, last_received_at = dup.last
      FROM dup WHERE d.id = dup.keep
)
DELETE FROM dead_letters d USING dup WHERE d.key = dup.key AND d.id <> dup.keep;

CREATE UNIQUE INDEX dead_letters_key ON dead_letters (key);
