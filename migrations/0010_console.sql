-- The operator console: server-side sessions, failed log-ins (rate limiting), and
-- the access log of residents' records.

-- A session is a random token in an HttpOnly cookie; only its SHA-256 is stored, so
-- a copy of this table opens nobody's console. Each session has its own CSRF token,
-- which every form and every state-changing request of that session must carry.
CREATE TABLE console_sessions (
    id              bigserial PRIMARY KEY,
    token_sha256    bytea NOT NULL UNIQUE,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    -- set by log-out; an ended or expired session is refused
    ended_at        timestamptz,
    ip              text NOT NULL DEFAULT '',
    user_agent      text NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id) WHERE ended_at IS NULL;

-- One row per refused log-in: a user name tried from an address this often within the
-- window is refused without checking the password. Rows, not memory, so a restart does
-- not reset the count.
CREATE TABLE login_failures (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL,
    ip              text NOT NULL,
    failed_at       timestamptz NOT NULL
);
CREATE INDEX login_failures_pair_idx ON login_failures (username, ip, failed_at);

-- Every opening of a resident's record on the console (a card popped by a call, a card
-- opened from a board, the resident's page): who, when, which record, from where.
CREATE TABLE resident_access_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL,
    user_id         bigint REFERENCES users(id) ON DELETE SET NULL,
    username        text NOT NULL,
    role            text NOT NULL,
    resident_id     bigint NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
    -- what opened it: 'card' (popped by a call or opened from a board), 'page', ...
    via             text NOT NULL,
    ip              text NOT NULL DEFAULT '',
    user_agent      text NOT NULL DEFAULT ''
);
CREATE INDEX resident_access_log_at_idx ON resident_access_log (at DESC);
CREATE INDEX resident_access_log_resident_idx ON resident_access_log (resident_id, at DESC);
