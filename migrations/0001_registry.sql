-- The registry: where people live, who they are, what they have at home,
-- who serves them, and who may use the system. Calls, alarms, alerts, orders
-- and offers arrive in later migrations and point at these tables.
-- Money is kept in fen (1/100 yuan) as bigint; times as timestamptz.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Geography: district → street → community ---------------------------------
CREATE TABLE districts (
    id          serial PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL UNIQUE,
    lat         double precision,
    lon         double precision
);

CREATE TABLE streets (
    id          serial PRIMARY KEY,
    district_id integer NOT NULL REFERENCES districts(id),
    name        text NOT NULL,
    UNIQUE (district_id, name)
);

CREATE TABLE communities (
    id          serial PRIMARY KEY,
    street_id   integer NOT NULL REFERENCES streets(id),
    name        text NOT NULL,
    lat         double precision,
    lon         double precision,
    UNIQUE (street_id, name)
);
CREATE INDEX communities_name_idx ON communities (name);

-- Subsidy programmes (政府购买服务) ---------------------------------------------
CREATE TABLE subsidy_programmes (
    code                    text PRIMARY KEY,
    name                    text NOT NULL,
    monthly_allowance_fen   bigint NOT NULL CHECK (monthly_allowance_fen >= 0),
    -- share of an eligible item's price the programme pays, the rest is co-pay
    coverage_percent        smallint NOT NULL DEFAULT 100 CHECK (coverage_percent BETWEEN 0 AND 100)
);

-- Residents (老人档案) -----------------------------------------------------------
CREATE TABLE residents (
    id                  bigserial PRIMARY KEY,
    id_number           text NOT NULL UNIQUE,          -- validated 18-character resident ID
    name                text NOT NULL,
    sex                 char(1) NOT NULL CHECK (sex IN ('M', 'F')),
    birth_date          date NOT NULL,
    address             text NOT NULL DEFAULT '',
    community_id        integer REFERENCES communities(id),
    lat                 double precision,
    lon                 double precision,
    living_situation    text NOT NULL DEFAULT 'with_family'
                        CHECK (living_situation IN ('alone', 'empty_nest', 'with_family')),
    language            text NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'mn')),
    chronic_conditions  text NOT NULL DEFAULT '',
    medication          text NOT NULL DEFAULT '',
    allergies           text NOT NULL DEFAULT '',
    mobility            text NOT NULL DEFAULT '',
    cognition           text NOT NULL DEFAULT '',
    notes               text NOT NULL DEFAULT '',
    subsidy_programme   text REFERENCES subsidy_programmes(code),
    -- overrides the programme's allowance for this resident when set
    monthly_allowance_fen bigint CHECK (monthly_allowance_fen >= 0),
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX residents_community_idx ON residents (community_id);
CREATE INDEX residents_name_trgm_idx ON residents USING gin (name gin_trgm_ops);

-- A resident's own phones, in E.164 (+8613800138000, +864716912345).
CREATE TABLE resident_phones (
    resident_id bigint NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
    e164        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('mobile', 'landline')),
    position    smallint NOT NULL DEFAULT 1,
    PRIMARY KEY (resident_id, e164)
);
CREATE INDEX resident_phones_e164_idx ON resident_phones (e164);

-- Emergency contacts (紧急联系人), tried in position order.
CREATE TABLE emergency_contacts (
    id          bigserial PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
    position    smallint NOT NULL CHECK (position >= 1),
    name        text NOT NULL,
    relation    text NOT NULL DEFAULT '',
    phone_e164  text NOT NULL,
    UNIQUE (resident_id, position)
);
CREATE INDEX emergency_contacts_phone_idx ON emergency_contacts (phone_e164);

-- Devices (电子保姆, pendants, sensors) ---------------------------------------
CREATE TABLE devices (
    id                  bigserial PRIMARY KEY,
    serial              text NOT NULL UNIQUE,
    kind                text NOT NULL
                        CHECK (kind IN ('home_unit', 'pendant', 'smoke', 'gas', 'door', 'water')),
    resident_id         bigint REFERENCES residents(id),
    -- how the device reaches us: its SIM/landline, its DC-09 account, its vendor cloud id
    caller_e164         text UNIQUE,
    dc09_account        text UNIQUE,
    cloud_id            text UNIQUE,
    heartbeat_interval_s integer NOT NULL DEFAULT 86400 CHECK (heartbeat_interval_s > 0),
    last_seen_at        timestamptz,
    battery_percent     smallint CHECK (battery_percent BETWEEN 0 AND 100),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'maintenance', 'retired')),
    false_alarms        integer NOT NULL DEFAULT 0,
    installed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_resident_idx ON devices (resident_id);

-- Service catalogue: categories and items ----------------------------------
CREATE TABLE service_categories (
    code        text PRIMARY KEY,
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    position    smallint NOT NULL DEFAULT 0
);

CREATE TABLE service_items (
    code                text PRIMARY KEY,
    category_code       text NOT NULL REFERENCES service_categories(code),
    name_zh             text NOT NULL,
    name_en             text NOT NULL,
    unit                text NOT NULL DEFAULT 'visit' CHECK (unit IN ('visit', 'hour', 'meal', 'item')),
    unit_price_fen      bigint NOT NULL CHECK (unit_price_fen >= 0),
    subsidy_eligible    boolean NOT NULL DEFAULT false,
    -- urgent items are offered to the top N providers at once
    urgent              boolean NOT NULL DEFAULT false,
    active              boolean NOT NULL DEFAULT true
);
CREATE INDEX service_items_category_idx ON service_items (category_code);

-- Franchised providers (加盟服务商) ----------------------------------------------
CREATE TABLE providers (
    id              bigserial PRIMARY KEY,
    licence_no      text NOT NULL UNIQUE,   -- 统一社会信用代码 or business licence number
    name            text NOT NULL,
    contact_name    text NOT NULL DEFAULT '',
    phone_e164      text,
    sms_e164        text NOT NULL,
    address         text NOT NULL DEFAULT '',
    base_lat        double precision,
    base_lon        double precision,
    capacity        integer NOT NULL DEFAULT 1 CHECK (capacity >= 0),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'inactive')),
    rating          numeric(3, 2) CHECK (rating BETWEEN 1 AND 5),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX providers_sms_idx ON providers (sms_e164);
CREATE INDEX providers_name_trgm_idx ON providers USING gin (name gin_trgm_ops);

CREATE TABLE provider_items (
    provider_id bigint NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    item_code   text NOT NULL REFERENCES service_items(code),
    price_fen   bigint NOT NULL CHECK (price_fen >= 0),
    PRIMARY KEY (provider_id, item_code)
);
CREATE INDEX provider_items_item_idx ON provider_items (item_code);

-- Areas served: whole districts, or single communities.
CREATE TABLE provider_areas (
    provider_id  bigint NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    district_id  integer REFERENCES districts(id),
    community_id integer REFERENCES communities(id),
    CHECK ((district_id IS NULL) <> (community_id IS NULL))
);
CREATE UNIQUE INDEX provider_areas_district_uq ON provider_areas (provider_id, district_id) WHERE district_id IS NOT NULL;
CREATE UNIQUE INDEX provider_areas_community_uq ON provider_areas (provider_id, community_id) WHERE community_id IS NOT NULL;
CREATE INDEX provider_areas_district_idx ON provider_areas (district_id);
CREATE INDEX provider_areas_community_idx ON provider_areas (community_id);

-- Emergency teams (应急服务队) -------------------------------------------------
CREATE TABLE emergency_teams (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    phone_e164  text NOT NULL,
    base_lat    double precision NOT NULL,
    base_lon    double precision NOT NULL,
    address     text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'inactive')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_districts (
    team_id     bigint NOT NULL REFERENCES emergency_teams(id) ON DELETE CASCADE,
    district_id integer NOT NULL REFERENCES districts(id),
    PRIMARY KEY (team_id, district_id)
);

CREATE TABLE team_members (
    id          bigserial PRIMARY KEY,
    team_id     bigint NOT NULL REFERENCES emergency_teams(id) ON DELETE CASCADE,
    name        text NOT NULL,
    phone_e164  text NOT NULL,
    role        text NOT NULL DEFAULT 'member' CHECK (role IN ('leader', 'member')),
    UNIQUE (team_id, phone_e164)
);
CREATE INDEX team_members_phone_idx ON team_members (phone_e164);

-- Duty roster: a team is on duty on these weekdays (1 = Monday … 7 = Sunday,
-- local time) between starts and ends; ends <= starts means past midnight.
CREATE TABLE team_roster (
    team_id     bigint NOT NULL REFERENCES emergency_teams(id) ON DELETE CASCADE,
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts      time NOT NULL,
    ends        time NOT NULL,
    PRIMARY KEY (team_id, weekday, starts)
);

-- Users and API tokens ----------------------------------------------------
CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    display_name    text NOT NULL DEFAULT '',
    role            text NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
    password_hash   text,           -- argon2id; NULL for token-only users
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens are stored only as their SHA-256; the token is shown once.
CREATE TABLE api_tokens (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_sha256    bytea NOT NULL UNIQUE,
    label           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);

-- The event log: every state change, append-only ---------------------------
-- subject_type/subject_id name what changed (resident, alert, order, offer,
-- sms, call, ...); context_id follows a chain (alarm → alert → SMS → reply).
CREATE TABLE events (
    id            bigserial PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    subject_type  text NOT NULL,
    subject_id    bigint NOT NULL,
    kind          text NOT NULL,
    actor         text NOT NULL,
    from_state    text,
    to_state      text,
    reason        text NOT NULL DEFAULT '',
    context_id    uuid,
    data          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_subject_idx ON events (subject_type, subject_id, id);
CREATE INDEX events_context_idx ON events (context_id) WHERE context_id IS NOT NULL;

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
