-- bankhook core schema: identity, reference data, subscriptions of every
-- dialect, and the delivery log. Applied once by `bankhook-api migrate`.

CREATE TABLE clients (
    id          text PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    api_secret  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             text PRIMARY KEY,
    client_id      text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    username       text UNIQUE,
    email          text NOT NULL DEFAULT '',
    password_hash  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A role, at one bank or system-wide (bank_id '').
CREATE TABLE entitlements (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL,
    bank_id     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, role, bank_id)
);

-- Bearer tokens are stored as SHA-256 hex; the token itself is shown once.
CREATE TABLE tokens (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE banks (
    bank_id        text PRIMARY KEY,
    name           text NOT NULL DEFAULT '',
    code           text NOT NULL DEFAULT '',
    connector_url  text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE consents (
    consent_id  text PRIMARY KEY,
    client_id   text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    accounts    jsonb NOT NULL DEFAULT '[]',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per webhook, whatever dialect created it (kind). The generic
-- filter is event_types + bank_id + account_id; a dialect keeps its own
-- fields (OBP trigger, acquirer key and payment methods, ...) in options.
CREATE TABLE subscriptions (
    id                          text PRIMARY KEY,
    seq                         bigserial UNIQUE,
    client_id                   text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kind                        text NOT NULL DEFAULT 'native',
    url                         text NOT NULL,
    description                 text NOT NULL DEFAULT '',
    event_types                 text[] NOT NULL DEFAULT '{}',
    bank_id                     text,
    account_id                  text,
    headers                     jsonb NOT NULL DEFAULT '{}',
    http_method                 text NOT NULL DEFAULT 'POST',
    options                     jsonb NOT NULL DEFAULT '{}',
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    created_by_user_id          text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    last_success_at             timestamptz,
    failing_since               timestamptz
);
CREATE INDEX subscriptions_client ON subscriptions (client_id, created_at);

-- Bumped on every change to subscriptions, so workers know when to reload
-- their in-memory copy with one cheap query per batch.
CREATE TABLE subscriptions_version (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    version  bigint NOT NULL
);
INSERT INTO subscriptions_version VALUES (true, 1);

CREATE FUNCTION subscriptions_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE subscriptions_version SET version = version + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER subscriptions_changed
    AFTER INSERT OR DELETE OR TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_bump_version();

-- Workers record last_success_at / failing_since after attempts; those
-- columns are not part of what workers cache, so updating only them must
-- not make every worker reload (statement triggers fire even for 0 rows).
CREATE TRIGGER subscriptions_updated
    AFTER UPDATE ON subscriptions
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_success_at' - 'failing_since')
          IS DISTINCT FROM (to_jsonb(NEW) - 'last_success_at' - 'failing_since'))
    EXECUTE FUNCTION subscriptions_bump_version();

-- Every accepted event, for deduplication by id and for replay.
CREATE TABLE events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    bank_id      text,
    account_id   text,
    body         jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_received ON events (received_at);

-- One event for one subscription. Its id is the webhook-id receivers see.
CREATE TABLE deliveries (
    id               text PRIMARY KEY,
    seq              bigserial UNIQUE,  -- list order and cursor
    event_id         text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id  text NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    client_id        text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_http_status integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, seq);
CREATE INDEX deliveries_client ON deliveries (client_id, seq);
CREATE INDEX subscriptions_failing ON subscriptions (failing_since) WHERE enabled;

CREATE TABLE attempts (
    id             bigserial PRIMARY KEY,
    delivery_id    text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt        integer NOT NULL,
    started_at     timestamptz NOT NULL,
    duration_ms    integer NOT NULL,
    http_status    integer,
    error          text,
    response_body  text
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, id);

-- The built-in operator tenant; its admin user holds the bootstrap token.
INSERT INTO clients (id, name, api_secret)
VALUES ('system', 'system', replace(gen_random_uuid()::text, '-', ''));
INSERT INTO users (id, client_id, username) VALUES ('admin', 'system', 'admin');
INSERT INTO entitlements (id, user_id, role, bank_id)
VALUES (gen_random_uuid()::text, 'admin', 'admin', '');
