-- A number outside its field's plausible bounds (chargelift_contract.fields) is a dead
-- letter `out_of_range`: one more reason for the dead-letter table.

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_reason_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_check CHECK (reason IN (
    'bad_topic', 'bad_json', 'bad_envelope', 'non_finite', 'wrong_type', 'unknown_field',
    'too_large', 'future_time', 'implausible_time', 'db_rejected', 'out_of_range'));
