-- Service levels, the resident timeline and the daily figures (dispatch/service_levels.py,
-- dispatch/resident_timeline.py, dispatch/daily_figures.py).

-- A hotline call that waited longer than service_levels.long_wait_seconds asks the operator
-- why; the reason is kept with the call (and a call.wait_reason event says who gave it).
ALTER TABLE calls
    ADD COLUMN wait_reason      text,
    ADD COLUMN wait_reason_by   text,
    ADD COLUMN wait_reason_at   timestamptz,
    ADD CONSTRAINT calls_wait_reason_complete
        CHECK ((wait_reason IS NULL) = (wait_reason_at IS NULL) AND (wait_reason IS NULL) = (wait_reason_by IS NULL));

-- Long waits still waiting for a reason: a range on wait_seconds among the inbound calls
-- without one (the threshold is configuration, so it cannot be part of the index).
CREATE INDEX calls_unexplained_wait_idx ON calls (wait_seconds)
    WHERE direction = 'inbound' AND wait_reason IS NULL;

-- The resident timeline reads a resident's care calls and other placed calls by time.
CREATE INDEX call_attempts_resident_idx ON call_attempts (resident_id, created_at)
    WHERE resident_id IS NOT NULL;

-- Service levels per day: offers by when they were made, visits by when their window opens.
CREATE INDEX order_offers_offered_idx ON order_offers (offered_at);
CREATE INDEX service_orders_window_idx ON service_orders (window_start);
