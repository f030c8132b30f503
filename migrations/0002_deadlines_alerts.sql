-- Deadlines: every timed step in Careline is a row (escalations, offer expiry,
-- follow-ups), so a restart re-arms them all by reading the table.
CREATE TABLE deadlines (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    subject_type  text NOT NULL,
    subject_id    bigint NOT NULL,
    due_at        timestamptz NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    fired_at      timestamptz,
    cancelled_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX deadlines_pending_idx ON deadlines (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX deadlines_subject_idx ON deadlines (subject_type, subject_id) WHERE fired_at IS NULL AND cancelled_at IS NULL;

-- Alerts (紧急求助) ------------------------------------------------------------
CREATE TABLE alerts (
    id                      bigserial PRIMARY KEY,
    resident_id             bigint REFERENCES residents(id),
    device_id               bigint REFERENCES devices(id),
    kind                    text NOT NULL CHECK (kind IN
                            ('sos', 'medical', 'fall', 'fire', 'gas', 'water', 'inactivity', 'tamper', 'other')),
    source                  text NOT NULL CHECK (source IN ('alarm', 'call', 'operator', 'care_plan', 'api')),
    state                   text NOT NULL DEFAULT 'raised' CHECK (state IN
                            ('raised', 'acknowledged', 'team_dispatched', 'team_acknowledged', 'on_scene',
                             'resolved', 'cancelled')),
    outcome                 text CHECK (outcome IN ('handled_at_home', 'hospital', 'false_alarm', 'no_access')),
    context_id              uuid NOT NULL,
    context                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    triggers                integer NOT NULL DEFAULT 1,
    raised_at               timestamptz NOT NULL,
    acknowledged_at         timestamptz,
    acknowledged_by         text,
    team_id                 bigint REFERENCES emergency_teams(id),
    dispatched_at           timestamptz,
    team_acknowledged_at    timestamptz,
    on_scene_at             timestamptz,
    handoff_120_at          timestamptz,
    closed_at               timestamptz,
    escalations             integer NOT NULL DEFAULT 0,
    family_notified_at      timestamptz,
    CHECK ((state = 'resolved') = (outcome IS NOT NULL))
);
-- One open alert per resident and kind: a second press joins the first.
CREATE UNIQUE INDEX alerts_open_resident_uq ON alerts (resident_id, kind)
    WHERE state NOT IN ('resolved', 'cancelled') AND resident_id IS NOT NULL;
CREATE UNIQUE INDEX alerts_open_device_uq ON alerts (device_id, kind)
    WHERE state NOT IN ('resolved', 'cancelled') AND resident_id IS NULL AND device_id IS NOT NULL;
CREATE INDEX alerts_open_idx ON alerts (raised_at) WHERE state NOT IN ('resolved', 'cancelled');
CREATE INDEX alerts_raised_idx ON alerts (raised_at);
CREATE INDEX alerts_resident_idx ON alerts (resident_id, raised_at);
CREATE INDEX alerts_team_open_idx ON alerts (team_id) WHERE state NOT IN ('resolved', 'cancelled');

-- Every team an alert was sent to, in order; the current one has superseded_at NULL.
CREATE TABLE alert_dispatches (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts(id),
    team_id         bigint NOT NULL REFERENCES emergency_teams(id),
    dispatched_at   timestamptz NOT NULL,
    dispatched_by   text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    acknowledged_at timestamptz,
    superseded_at   timestamptz
);
CREATE INDEX alert_dispatches_alert_idx ON alert_dispatches (alert_id, id);

-- Which emergency contacts were told about an alert, in order.
CREATE TABLE alert_family_notices (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts(id),
    contact_id      bigint NOT NULL REFERENCES emergency_contacts(id),
    purpose         text NOT NULL CHECK (purpose IN ('raised', 'resolved')),
    sms_id          bigint,
    notified_at     timestamptz NOT NULL,
    UNIQUE (alert_id, contact_id, purpose)
);
