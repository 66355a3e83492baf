-- PSD2 application webhooks and asynchronous /refresh (issue 5; PRODUCT.md
-- 6.2; api/dialect_psd2.c, api/routes_consents.c, scheduler/psd2.c).

-- The accounts of a consent, one row each, so an incoming transaction finds
-- the consents covering its account through an index (consents.accounts
-- keeps the document as PUT /v1/consents stored it).
CREATE TABLE consent_accounts (
    consent_id  text NOT NULL REFERENCES consents (consent_id) ON DELETE CASCADE,
    bank_code   text NOT NULL,
    account_id  text NOT NULL,
    PRIMARY KEY (consent_id, bank_code, account_id)
);
CREATE INDEX consent_accounts_account ON consent_accounts (account_id);
-- Banks are found by code (consents name banks by code).
CREATE INDEX banks_code ON banks (code);

-- Webhook settings of an application (client). The settings in force are
-- the client's subscription of kind 'psd2' (url, headers.Authorization,
-- enabled); a change waits here until pending_from (the next full hour),
-- when the scheduler applies it. Disabling never waits.
CREATE TABLE psd2_settings (
    client_id         text PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    pending_endpoint  text,
    pending_header    text,
    pending_from      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((pending_from IS NULL) = (pending_endpoint IS NULL))
);
CREATE INDEX psd2_settings_due ON psd2_settings (pending_from) WHERE pending_from IS NOT NULL;
-- One application webhook per client.
CREATE UNIQUE INDEX subscriptions_psd2_client ON subscriptions (client_id) WHERE kind = 'psd2';

-- Accounts of a consent that had new transactions since the consent's
-- window opened (first_at of its oldest row). The scheduler turns them into
-- one transactionEvent per consent when the window closes and deletes them.
CREATE TABLE psd2_tx_pending (
    consent_id  text NOT NULL REFERENCES consents (consent_id) ON DELETE CASCADE,
    bank_code   text NOT NULL,
    account_id  text NOT NULL,
    first_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consent_id, bank_code, account_id)
);

-- Every accepted event is inserted into events exactly once (duplicates
-- are dropped by ON CONFLICT and do not reach the transition table), in the
-- transaction that stores it: marking covered accounts here needs no code
-- in the worker and is exactly as durable as the event itself. Whether the
-- bank is the bank itself (psd2.own_bank_code) is the scheduler's concern.
CREATE FUNCTION psd2_mark_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO psd2_tx_pending (consent_id, bank_code, account_id)
    SELECT DISTINCT ca.consent_id, ca.bank_code, ca.account_id
      FROM new_events e
      JOIN banks b ON b.bank_id = e.bank_id AND b.code <> ''
      JOIN consent_accounts ca ON ca.account_id = e.account_id AND ca.bank_code = b.code
     WHERE e.type = 'transaction.created'
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER events_psd2_transactions
    AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION psd2_mark_transactions();

-- /refresh tasks. QUEUED until the scheduler takes the request from
-- bankhook.refresh (or finds it in its sweep), RUNNING while banks are
-- refreshed, COMPLETED when every bank FINISHED or FAILED. At most one
-- unfinished task per consent.
CREATE TABLE psd2_tasks (
    id           text PRIMARY KEY,
    consent_id   text NOT NULL REFERENCES consents (consent_id) ON DELETE CASCADE,
    client_id    text NOT NULL,
    status       text NOT NULL DEFAULT 'QUEUED'
                 CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE UNIQUE INDEX psd2_tasks_unfinished ON psd2_tasks (consent_id) WHERE status <> 'COMPLETED';
CREATE INDEX psd2_tasks_queued ON psd2_tasks (created_at) WHERE status = 'QUEUED';
-- Retention (scheduler): completed tasks by age.
CREATE INDEX psd2_tasks_finished ON psd2_tasks (finished_at) WHERE status = 'COMPLETED';

-- One bank's part of a task. PENDING waits for next_at; RUNNING is leased
-- until next_at (a scheduler that died mid-call is replaced once it
-- passed); FINISHED and FAILED are final, with the accountEvent's delivery.
CREATE TABLE psd2_task_banks (
    task_id      text NOT NULL REFERENCES psd2_tasks (id) ON DELETE CASCADE,
    bank_code    text NOT NULL,
    status       text NOT NULL DEFAULT 'PENDING'
                 CHECK (status IN ('PENDING', 'RUNNING', 'FINISHED', 'FAILED')),
    attempts     integer NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    accounts     jsonb,
    delivery_id  text,
    finished_at  timestamptz,
    PRIMARY KEY (task_id, bank_code)
);
CREATE INDEX psd2_task_banks_due ON psd2_task_banks (next_at) WHERE status IN ('PENDING', 'RUNNING');

-- The accounts a bank's connector returned at the last successful refresh
-- of a consent: what ADDED / UPDATED / DELETED are computed against.
CREATE TABLE psd2_snapshots (
    consent_id  text NOT NULL REFERENCES consents (consent_id) ON DELETE CASCADE,
    bank_code   text NOT NULL,
    account_id  text NOT NULL,
    balance     text NOT NULL,
    currency    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consent_id, bank_code, account_id)
);
