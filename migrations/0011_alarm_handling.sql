-- Alarm intake in two steps: an alarm is stored (and its sender answered) first, then given
-- its meaning (an alert raised or joined, a note, a notice) by the handler. Until then its
-- outcome is 'pending'; a pending alarm left by a crash is handled at the next start.

-- who acted, for the alert's timeline (dc09:<account>, cid:<account>, http:<integration name>);
-- NULL on rows stored before this migration, where the sender stands in
ALTER TABLE alarms ADD COLUMN actor text;
-- when the handler gave it its meaning (NULL while pending, and for life signs, which have none)
ALTER TABLE alarms ADD COLUMN handled_at timestamptz;

-- the handler's own look-ups at start and in its retry sweep: a handful of rows at any time
CREATE INDEX alarms_pending_idx ON alarms (received_at, id) WHERE outcome = 'pending';
