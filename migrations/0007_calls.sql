-- Telephony: every call through Asterisk, and every call Careline placed itself.
--
-- A call is the set of Asterisk channels that share a Linkedid on one server
-- (an inbound call, its queue and its operator leg; a callback and both its legs).
-- Its row is written while it rings and updated as it is answered and ends.

-- Calls Careline asked Asterisk to place (Originate, Async): a callback from an
-- operator, a care call or rating call into an IVR, a call to a family contact.
-- The ActionID ties Asterisk's answer (OriginateResponse) and the IVR's report
-- (UserEvent CareCallResult, CallId = the ActionID) to the row.
CREATE TABLE call_attempts (
    id              bigserial PRIMARY KEY,
    purpose         text NOT NULL CHECK (purpose IN ('callback', 'care_call', 'rating', 'family')),
    server          text NOT NULL,
    action_id       text NOT NULL UNIQUE,
    -- the number rung (E.164): the resident, or the family contact
    target          text NOT NULL,
    resident_id     bigint REFERENCES residents(id),
    alert_id        bigint REFERENCES alerts(id),
    contact_id      bigint REFERENCES emergency_contacts(id),
    -- the operator extension rung first (callback; a family call placed from the console)
    operator        text,
    -- what the service lane placed it for (an order, a care plan), free for its use
    subject_type    text,
    subject_id      bigint,
    requested_by    text NOT NULL,
    context_id      uuid NOT NULL,
    -- pending: written, not yet accepted by Asterisk; queued: Asterisk accepted the
    -- Originate; finished: the result is known (or the timeout gave up on it)
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'queued', 'finished')),
    result          text CHECK (result IN ('answered', 'busy', 'no_answer', 'failed')),
    -- OriginateResponse Reason: 0 not created, 1 hung up, 3 no answer, 4 answered, 5 busy, 8 congestion
    reason_code     smallint,
    reason          text NOT NULL DEFAULT '',
    -- what the resident pressed in the IVR, and how the read ended (OK, TIMEOUT, HANGUP)
    digit           text,
    read_status     text,
    created_at      timestamptz NOT NULL,
    queued_at       timestamptz,
    finished_at     timestamptz,
    reported_at     timestamptz,
    -- when a call nobody answered for is given up as failed (a deadline row fires it)
    timeout_at      timestamptz NOT NULL,
    CHECK ((state = 'finished') = (result IS NOT NULL)),
    CHECK ((result IS NULL) = (finished_at IS NULL))
);
CREATE INDEX call_attempts_created_idx ON call_attempts (created_at);
CREATE INDEX call_attempts_subject_idx ON call_attempts (subject_type, subject_id) WHERE subject_type IS NOT NULL;
CREATE INDEX call_attempts_open_idx ON call_attempts (server) WHERE state <> 'finished';

CREATE TABLE calls (
    id              bigserial PRIMARY KEY,
    server          text NOT NULL,
    linkedid        text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- E.164 when the number parses, else as Asterisk gave it; NULL when withheld
    caller_number   text,
    called_number   text,
    -- inbound: the number dialled (hotline or emergency DID)
    did             text,
    emergency       boolean NOT NULL DEFAULT false,
    -- who the far end is, decided once before call.ringing is published
    party           text CHECK (party IN ('resident', 'provider', 'team', 'unknown')),
    resident_id     bigint REFERENCES residents(id),
    device_id       bigint REFERENCES devices(id),
    provider_id     bigint REFERENCES providers(id),
    team_id         bigint REFERENCES emergency_teams(id),
    alert_id        bigint REFERENCES alerts(id),
    attempt_id      bigint REFERENCES call_attempts(id),
    queue           text,
    operator        text,
    arrived_at      timestamptz NOT NULL,
    answered_at     timestamptz,
    ended_at        timestamptz,
    wait_seconds    integer CHECK (wait_seconds >= 0),
    talk_seconds    integer CHECK (talk_seconds >= 0),
    disposition     text CHECK (disposition IN ('answered', 'abandoned', 'failed', 'busy', 'no_answer')),
    -- Q.850: 16 normal clearing, 17 busy, 19 no answer, 34 no circuit; NULL when the call
    -- ended while the link was down and only a re-sync saw it gone
    hangup_cause    smallint,
    -- some of what the row says was learnt from a re-sync after a link outage (times are
    -- then the re-sync's, not the moment it happened)
    resynced        boolean NOT NULL DEFAULT false,
    context_id      uuid NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (server, linkedid),
    CHECK ((ended_at IS NULL) = (disposition IS NULL))
);
CREATE INDEX calls_arrived_idx ON calls (arrived_at);
CREATE INDEX calls_resident_idx ON calls (resident_id, arrived_at) WHERE resident_id IS NOT NULL;
CREATE INDEX calls_open_idx ON calls (server) WHERE ended_at IS NULL;

ALTER TABLE call_attempts ADD COLUMN call_id bigint REFERENCES calls(id);
