-- Three more commands (chargelift_contract.commands): Start (a remote start),
-- Operative and Inoperative (the charger's availability). The audit keeps them like the
-- others.

ALTER TABLE commands DROP CONSTRAINT commands_command_check;
ALTER TABLE commands ADD CONSTRAINT commands_command_check CHECK (command IN (
    'CurrentLimit', 'Pause', 'Resume', 'Stop', 'Start', 'Operative', 'Inoperative'));
