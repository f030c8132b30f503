-- Alarm intake: every message an emergency button or sensor sends (Contact ID through
-- Asterisk, SIA DC-09 over IP, device-cloud JSON) is one `alarms` row, committed in the
-- same transaction as the alert, note or notice it led to, before the sender is answered.

-- Device-cloud integrations: each signs its posts with HMAC-SHA256. The secret must be
-- recoverable to check a signature, so it is stored encrypted (AES-GCM under a key derived
-- from CARELINE_SECRET_KEY, the integration key as associated data), never in clear.
CREATE TABLE integrations (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    key                 text NOT NULL UNIQUE,
    secret_sealed       bytea NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);

CREATE TABLE alarms (
    id                  bigserial PRIMARY KEY,
    source              text NOT NULL CHECK (source IN ('contact_id', 'dc09', 'http')),
    -- who sent it as the protocol names it (dc09:<account>, cid:<account>, http:<integration>:<device>),
    -- so that alarms of a device nobody registered still group together
    sender              text NOT NULL,
    device_id           bigint REFERENCES devices(id),
    resident_id         bigint REFERENCES residents(id),
    kind                text NOT NULL CHECK (kind IN
                        ('sos', 'medical', 'fall', 'fire', 'gas', 'water', 'inactivity', 'tamper', 'other',
                         'low_battery', 'mains_loss', 'trouble', 'test', 'heartbeat', 'cancel', 'status')),
    qualifier           text NOT NULL CHECK (qualifier IN ('new', 'restore', 'status')),
    -- the protocol's own code: Contact ID event (e.g. '101'), SIA event code (e.g. 'PA'), JSON kind
    code                text NOT NULL,
    zone                text,
    partition           text,
    -- what the sender sent, as text (the Contact ID string, the decrypted DC-09 frame, the JSON body)
    payload             text NOT NULL,
    details             jsonb NOT NULL DEFAULT '{}'::jsonb,
    sender_at           timestamptz,
    received_at         timestamptz NOT NULL,
    -- what the alarm did: raised/joined an alert, a note on one, a notice, a heartbeat only
    outcome             text NOT NULL,
    alert_id            bigint REFERENCES alerts(id),
    notice_id           bigint REFERENCES notices(id),
    integration_id      bigint REFERENCES integrations(id),
    context_id          uuid
);
CREATE INDEX alarms_received_idx ON alarms (received_at DESC, id DESC);
CREATE INDEX alarms_device_idx ON alarms (device_id, received_at DESC);
CREATE INDEX alarms_resident_idx ON alarms (resident_id, received_at DESC);
CREATE INDEX alarms_alert_idx ON alarms (alert_id) WHERE alert_id IS NOT NULL;
CREATE INDEX alarms_sender_idx ON alarms (sender, id DESC);

-- Receipts make intake idempotent in the database, so a resend survives a restart:
-- DC-09 keys on account/receiver/line/sequence (a window, since sequences wrap at 9999),
-- device clouds on their integration and event id (forever), Contact ID on the event itself.
-- `digest` is what the message said, less its timestamp and encryption padding.
CREATE TABLE alarm_receipts (
    source              text NOT NULL,
    key                 text NOT NULL,
    digest              text NOT NULL,
    received_at         timestamptz NOT NULL,
    alarm_ids           bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (source, key)
);

-- Heartbeats: when a device becomes overdue (two intervals without a word), and whether
-- the current silence was already raised as a notice (cleared when the device is heard).
ALTER TABLE devices
    ADD COLUMN silent_after         timestamptz,
    ADD COLUMN silence_noticed_at   timestamptz,
    ADD COLUMN mains_lost_at        timestamptz,
    ADD COLUMN battery_low_at       timestamptz;

-- Kept by a trigger rather than by each writer: devices are inserted by the registry,
-- imports and the demo as well as updated by intake, and every path must arm the sweep.
CREATE FUNCTION devices_silent_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.silent_after := coalesce(NEW.last_seen_at, NEW.installed_at)
                        + make_interval(secs => 2 * NEW.heartbeat_interval_s);
    IF TG_OP = 'UPDATE' AND NEW.last_seen_at IS DISTINCT FROM OLD.last_seen_at THEN
        NEW.silence_noticed_at := NULL;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER devices_silent_after
    BEFORE INSERT OR UPDATE OF last_seen_at, heartbeat_interval_s, installed_at ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_silent_after();
UPDATE devices SET last_seen_at = last_seen_at;

CREATE INDEX devices_silence_due_idx ON devices (silent_after)
    WHERE status = 'active' AND silence_noticed_at IS NULL;
CREATE INDEX devices_silent_idx ON devices (silent_after) WHERE status = 'active';
