-- Commands to chargers and their results: the audit (chargelift_contract.commands).
--
-- `commands` holds every command seen, once per (charger, command_id): ingest inserts
-- what it reads on chargers/+/set/+, and the API inserts what it accepts before it
-- publishes (so a command that never reaches the broker is still on record and its
-- status can say `expired`). Whoever comes second changes nothing but may fill in
-- what the first did not know (ON CONFLICT ... DO UPDATE ... COALESCE).
--
-- `command_results` holds every result, once per (charger, command_id, outcome): a
-- limit can be `applied` and later `reverted` (its lease ran out).

CREATE TABLE commands (
    charger     text             NOT NULL,
    command_id  text             NOT NULL,
    command     text             NOT NULL CHECK (command IN ('CurrentLimit', 'Pause', 'Resume', 'Stop')),
    value       double precision,
    issued_at   timestamptz      NOT NULL,
    expires_at  timestamptz      NOT NULL,
    valid_for   double precision,
    issuer      text,            -- the envelope's Issuer, or "token:<name>" from the API
    via         text             NOT NULL CHECK (via IN ('api', 'mqtt')),
    received_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (charger, command_id)
);
CREATE INDEX commands_newest ON commands (charger, received_at DESC, command_id);

CREATE TABLE command_results (
    charger     text             NOT NULL,
    command_id  text             NOT NULL,
    outcome     text             NOT NULL CHECK (outcome IN ('applied', 'rejected', 'expired', 'failed', 'reverted')),
    reason      text             NOT NULL,
    at          timestamptz      NOT NULL,   -- when the edge decided
    value       double precision,            -- the limit in force afterwards (CurrentLimit)
    lease_end   timestamptz,
    received_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (charger, command_id, outcome)
);

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_reason_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_check CHECK (reason IN (
    'bad_topic', 'bad_json', 'bad_envelope', 'non_finite', 'wrong_type', 'unknown_field',
    'too_large', 'future_time', 'implausible_time', 'db_rejected', 'out_of_range',
    'bad_command', 'bad_result'));
