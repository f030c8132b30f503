-- Care plans (关爱服务), the outbound call tasks of the service lane, and the links that make one
-- case file: an order opened as follow-up work of an alert, a repair order opened by a device.

-- A care plan: recurring care calls to a resident (most often one living alone). The schedule is
-- weekly (ISO days 1 = Monday … 7 at a local time of day, in the hotline's time zone) or every
-- `interval_seconds` from `starts_at`. The next due call is a deadline row (care_plan.due); the
-- row here is the truth it is recomputed from.
CREATE TABLE care_plans (
    id                      bigserial PRIMARY KEY,
    resident_id             bigint NOT NULL REFERENCES residents(id),
    schedule                text NOT NULL CHECK (schedule IN ('weekly', 'interval')),
    days                    smallint[] NOT NULL DEFAULT '{}',
    time_of_day             time,
    interval_seconds        integer CHECK (interval_seconds BETWEEN 600 AND 2678400),
    starts_at               timestamptz NOT NULL,
    active                  boolean NOT NULL DEFAULT true,
    -- this many unanswered calls in a row raise an inactivity alert
    unanswered_threshold    smallint NOT NULL DEFAULT 3 CHECK (unanswered_threshold BETWEEN 1 AND 20),
    -- an unanswered call is tried again this long after (0: wait for the next scheduled call)
    retry_seconds           integer NOT NULL DEFAULT 600 CHECK (retry_seconds BETWEEN 0 AND 86400),
    unanswered_in_a_row     smallint NOT NULL DEFAULT 0,
    notes                   text NOT NULL DEFAULT '',
    created_at              timestamptz NOT NULL,
    created_by              text NOT NULL,
    updated_at              timestamptz NOT NULL,
    next_due_at             timestamptz,
    last_called_at          timestamptz,
    last_answered_at        timestamptz,
    CHECK (schedule <> 'weekly' OR (time_of_day IS NOT NULL AND cardinality(days) BETWEEN 1 AND 7
                                    AND days <@ '{1,2,3,4,5,6,7}'::smallint[])),
    CHECK (schedule <> 'interval' OR interval_seconds IS NOT NULL)
);
CREATE INDEX care_plans_resident_idx ON care_plans (resident_id, id);

-- An outbound call the service lane wants made: a follow-up rating call after a visit, a care
-- plan's call, a reassurance call while a device is repaired, a follow-up call after an alert.
-- Each try is a call_attempts row (subject 'call_task'); `attempt_id` is the latest. The task
-- ends done (answered, or rated), with the operators (tries used up, or no telephony: a
-- notice asks for the call by hand), or cancelled (nothing left to ask).
CREATE TABLE call_tasks (
    id              bigserial PRIMARY KEY,
    reason          text NOT NULL CHECK (reason IN
                    ('order_follow_up', 'care_plan', 'repair_reassurance', 'alert_follow_up')),
    purpose         text NOT NULL CHECK (purpose IN ('care_call', 'rating')),
    resident_id     bigint NOT NULL REFERENCES residents(id),
    -- what the task is for: an order, a care plan, an alert
    subject_type    text NOT NULL,
    subject_id      bigint NOT NULL,
    alert_id        bigint REFERENCES alerts(id),
    context_id      uuid NOT NULL,
    state           text NOT NULL DEFAULT 'scheduled'
                    CHECK (state IN ('scheduled', 'calling', 'done', 'operator', 'cancelled')),
    outcome         text NOT NULL DEFAULT '',
    tries           smallint NOT NULL DEFAULT 0,
    max_tries       smallint NOT NULL CHECK (max_tries BETWEEN 1 AND 20),
    retry_seconds   integer NOT NULL CHECK (retry_seconds >= 0),
    due_at          timestamptz NOT NULL,
    attempt_id      bigint REFERENCES call_attempts(id),
    digit           text,
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    finished_at     timestamptz,
    CHECK ((state IN ('done', 'operator', 'cancelled')) = (finished_at IS NOT NULL))
);
CREATE INDEX call_tasks_subject_idx ON call_tasks (subject_type, subject_id, id);
CREATE INDEX call_tasks_alert_idx ON call_tasks (alert_id) WHERE alert_id IS NOT NULL;

-- One case file: the alert an order is follow-up work of. Orders opened by a device's fault
-- (source 'device') or from an alert (source 'alert').
ALTER TABLE service_orders ADD COLUMN alert_id bigint REFERENCES alerts(id);
ALTER TABLE service_orders DROP CONSTRAINT service_orders_source_check;
ALTER TABLE service_orders ADD CONSTRAINT service_orders_source_check
    CHECK (source IN ('operator', 'button', 'call', 'api', 'device', 'alert'));
CREATE INDEX service_orders_alert_idx ON service_orders (alert_id) WHERE alert_id IS NOT NULL;
-- One open repair order per device: a second fault joins the first, and two racing reports
-- cannot open two.
CREATE UNIQUE INDEX service_orders_open_repair_idx ON service_orders (device_id)
    WHERE source = 'device' AND state IN ('new', 'offered', 'accepted', 'in_service', 'unfilled');
