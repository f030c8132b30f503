-- SMS: every message in and out, the jobs parties answer by code, and the
-- operator notices that anything may raise.

-- Jobs sent by SMS (an emergency dispatch to a team, an order offer to a
-- provider). The code is what a party types in a reply ("1 4821"): short,
-- unique among open jobs only, so four digits last a long time.
CREATE TABLE sms_jobs (
    id            bigserial PRIMARY KEY,
    code          text NOT NULL CHECK (code ~ '^[1-9][0-9]{3,7}$'),
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]*$'),
    subject_type  text NOT NULL,
    subject_id    bigint NOT NULL,
    party_type    text NOT NULL CHECK (party_type IN ('team', 'provider')),
    party_id      bigint NOT NULL,
    open          boolean NOT NULL DEFAULT true,
    context_id    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    closed_at     timestamptz,
    close_reason  text,
    CHECK (open = (closed_at IS NULL))
);
CREATE UNIQUE INDEX sms_jobs_open_code_uq ON sms_jobs (code) WHERE open;
CREATE INDEX sms_jobs_party_open_idx ON sms_jobs (party_type, party_id) WHERE open;
CREATE INDEX sms_jobs_subject_idx ON sms_jobs (subject_type, subject_id);
CREATE INDEX sms_jobs_expiry_idx ON sms_jobs (expires_at) WHERE open;

-- Messages. Outbound rows are queued in the transaction of the change that
-- caused them and sent by the SMS worker; inbound rows are stored before the
-- webhook answers. Status of an outbound message:
--   queued → sending → sent → delivered | undelivered | failed
--   (sending → queued again after a transient failure, with next_attempt_at)
-- and of an inbound one: received.
CREATE TABLE sms_messages (
    id               bigserial PRIMARY KEY,
    direction        text NOT NULL CHECK (direction IN ('out', 'in')),
    to_e164          text NOT NULL,
    from_e164        text,              -- NULL outbound when a Messaging Service picks the sender
    body             text NOT NULL,
    segments         smallint NOT NULL CHECK (segments >= 1),
    status           text NOT NULL CHECK (status IN
                     ('queued', 'sending', 'sent', 'delivered', 'failed', 'undelivered', 'received')),
    -- offer, dispatch, family, reminder, cancellation, proof_of_service, help, reply_ack, ...; reply (inbound)
    purpose          text NOT NULL CHECK (purpose ~ '^[a-z][a-z0-9_]*$'),
    language         text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en')),
    -- higher goes first: an emergency dispatch before a reminder
    priority         smallint NOT NULL DEFAULT 0,
    idempotency_key  text UNIQUE,
    provider_sid     text UNIQUE,       -- Twilio MessageSid (SM...), or OUTBOX... in the outbox
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    lease_until      timestamptz,       -- while sending: when the sender's claim runs out
    last_error       text,
    error_code       text,
    context_id       uuid,
    subject_type     text,
    subject_id       bigint,
    job_id           bigint REFERENCES sms_jobs(id),  -- inbound: the job the reply was about
    outcome          text,              -- inbound: what routing did with it (acted, unparsed, ...)
    flagged          boolean NOT NULL DEFAULT false,
    flag_reason      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((direction = 'in') = (status = 'received')),
    CHECK (direction = 'in' OR idempotency_key IS NOT NULL),
    CHECK (flagged OR flag_reason IS NULL)
);
CREATE INDEX sms_messages_due_idx ON sms_messages (priority DESC, next_attempt_at)
    WHERE status = 'queued';
CREATE INDEX sms_messages_sending_idx ON sms_messages (lease_until) WHERE status = 'sending';
CREATE INDEX sms_messages_to_idx ON sms_messages (to_e164, created_at);
CREATE INDEX sms_messages_from_idx ON sms_messages (from_e164, created_at);
CREATE INDEX sms_messages_created_idx ON sms_messages (created_at, id);
CREATE INDEX sms_messages_subject_idx ON sms_messages (subject_type, subject_id)
    WHERE subject_type IS NOT NULL;

-- Things an operator must see: an SMS that could not be delivered, a reply
-- from an unknown number, an ambiguous reply... Generic: any part of the
-- system raises them; the console lists the unacknowledged ones.
CREATE TABLE notices (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]*$'),
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    text             text NOT NULL,
    subject_type     text,
    subject_id       bigint,
    context_id       uuid,
    data             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_by  bigint REFERENCES users(id),
    acknowledged_at  timestamptz,
    CHECK (acknowledged_by IS NULL OR acknowledged_at IS NOT NULL)
);
CREATE INDEX notices_open_idx ON notices (created_at) WHERE acknowledged_at IS NULL;
CREATE INDEX notices_subject_idx ON notices (subject_type, subject_id) WHERE subject_type IS NOT NULL;
