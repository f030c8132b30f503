-- The service lane: service orders (工单), the offers made to providers for
-- them, and the evidence that a visit happened. Money in fen, times timestamptz.

-- The item the green service button of a unit orders when pressed (none: the
-- button only raises a call-back for an operator).
ALTER TABLE devices ADD COLUMN service_item_code text REFERENCES service_items(code);

CREATE TABLE service_orders (
    id                  bigserial PRIMARY KEY,
    resident_id         bigint NOT NULL REFERENCES residents(id),
    item_code           text NOT NULL REFERENCES service_items(code),
    source              text NOT NULL CHECK (source IN ('operator', 'button', 'call', 'api')),
    device_id           bigint REFERENCES devices(id),
    state               text NOT NULL DEFAULT 'new' CHECK (state IN
                        ('new', 'offered', 'accepted', 'in_service', 'completed', 'confirmed', 'settled',
                         'cancelled', 'unfilled', 'complaint')),
    -- copied from the item when ordered: urgent items are offered to several providers at once
    urgent              boolean NOT NULL,
    window_start        timestamptz NOT NULL,
    window_end          timestamptz NOT NULL,
    notes               text NOT NULL DEFAULT '',
    context_id          uuid NOT NULL,
    created_at          timestamptz NOT NULL,
    created_by          text NOT NULL,
    -- The price and who pays it, fixed when ordered: covered by the subsidy programme, the
    -- resident's co-pay on the eligible part, and the part no programme pays (the item is not
    -- eligible, the resident has no programme, or the month's allowance is used up).
    price_fen           bigint NOT NULL CHECK (price_fen >= 0),
    covered_fen         bigint NOT NULL CHECK (covered_fen >= 0),
    copay_fen           bigint NOT NULL CHECK (copay_fen >= 0),
    not_eligible_fen    bigint NOT NULL CHECK (not_eligible_fen >= 0),
    subsidy_programme   text REFERENCES subsidy_programmes(code),
    -- first day of the local (Asia/Shanghai) month whose allowance the order draws on
    subsidy_month       date NOT NULL,
    allowance_fen       bigint NOT NULL DEFAULT 0 CHECK (allowance_fen >= 0),
    allowance_left_fen  bigint NOT NULL DEFAULT 0 CHECK (allowance_left_fen >= 0),
    -- why the split is what it is: [{"zh": …, "en": …}]
    subsidy_reasons     jsonb NOT NULL DEFAULT '[]'::jsonb,
    provider_id         bigint REFERENCES providers(id),
    accepted_at         timestamptz,
    -- the visit as it counts (the evidence rows below say who reported it and how)
    checked_in_at       timestamptz,
    checked_in_source   text CHECK (checked_in_source IN ('sms', 'page', 'call', 'api')),
    checked_out_at      timestamptz,
    checked_out_source  text CHECK (checked_out_source IN ('sms', 'page', 'call', 'api')),
    service_seconds     integer GENERATED ALWAYS AS
                        (extract(epoch FROM checked_out_at - checked_in_at)::integer) STORED,
    -- the follow-up call (回访)
    rating              smallint CHECK (rating BETWEEN 1 AND 5),
    follow_up_note      text NOT NULL DEFAULT '',
    confirmed_at        timestamptz,
    -- monthly settlement of government-purchased services
    settled_at          timestamptz,
    settlement_ref      text,
    closed_at           timestamptz,
    close_reason        text NOT NULL DEFAULT '',
    CHECK (window_end > window_start),
    CHECK (covered_fen + copay_fen + not_eligible_fen = price_fen),
    CHECK (extract(day FROM subsidy_month) = 1),
    CHECK (state IN ('new', 'offered', 'unfilled', 'cancelled') OR provider_id IS NOT NULL),
    CHECK (checked_out_at IS NULL OR checked_out_at >= checked_in_at)
);
-- the month's allowance already drawn by a resident (cancelled orders give theirs back)
CREATE INDEX service_orders_allowance_idx ON service_orders (resident_id, subsidy_month)
    INCLUDE (covered_fen) WHERE state <> 'cancelled';
-- a provider's commitments overlapping a window (capacity and load in matching)
CREATE INDEX service_orders_provider_busy_idx ON service_orders (provider_id, window_start)
    INCLUDE (window_end) WHERE state IN ('accepted', 'in_service');
-- a provider's recent work (fairness in matching)
CREATE INDEX service_orders_provider_recent_idx ON service_orders (provider_id, accepted_at)
    WHERE provider_id IS NOT NULL;
CREATE INDEX service_orders_created_idx ON service_orders (created_at, id);
CREATE INDEX service_orders_resident_idx ON service_orders (resident_id, created_at);
CREATE INDEX service_orders_state_idx ON service_orders (state, created_at);

-- Every provider an order was offered to. The row is the truth about the offer,
-- written under the order's row lock; the SMS job follows it. outcome uses the
-- close reasons of sms_jobs; an accepted offer taken back by an operator keeps
-- 'accepted' and gets withdrawn_at.
CREATE TABLE order_offers (
    id              bigserial PRIMARY KEY,
    order_id        bigint NOT NULL REFERENCES service_orders(id),
    provider_id     bigint NOT NULL REFERENCES providers(id),
    job_id          bigint NOT NULL UNIQUE REFERENCES sms_jobs(id),
    chosen          text NOT NULL CHECK (chosen IN ('ranked', 'fanout', 'operator')),
    rank            integer,
    score           double precision,
    score_parts     jsonb NOT NULL DEFAULT '{}'::jsonb,
    offered_at      timestamptz NOT NULL,
    offered_by      text NOT NULL,
    due_at          timestamptz NOT NULL,
    outcome         text CHECK (outcome IN ('accepted', 'declined', 'expired', 'cancelled', 'taken_by_other')),
    answered_at     timestamptz,
    answered_by     text,
    withdrawn_at    timestamptz,
    CHECK ((outcome IS NULL) = (answered_at IS NULL)),
    CHECK (withdrawn_at IS NULL OR outcome = 'accepted')
);
CREATE INDEX order_offers_order_idx ON order_offers (order_id, id);
CREATE INDEX order_offers_pending_idx ON order_offers (provider_id) WHERE outcome IS NULL;

-- Evidence of a visit: each check-in and check-out as reported, by the provider's SMS or job
-- page, an operator through the API, or a call from the resident's own phone.
CREATE TABLE order_visit_evidence (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES service_orders(id),
    kind        text NOT NULL CHECK (kind IN ('check_in', 'check_out')),
    source      text NOT NULL CHECK (source IN ('sms', 'page', 'call', 'api')),
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor       text NOT NULL,
    call_id     bigint,
    note        text NOT NULL DEFAULT ''
);
CREATE INDEX order_visit_evidence_order_idx ON order_visit_evidence (order_id, id);

-- A provider's answers to its latest offers (acceptance rate in matching).
CREATE INDEX sms_jobs_offer_answers_idx ON sms_jobs (party_id, closed_at DESC)
    INCLUDE (close_reason)
    WHERE kind = 'order_offer' AND party_type = 'provider'
      AND close_reason IN ('accepted', 'declined', 'expired');
