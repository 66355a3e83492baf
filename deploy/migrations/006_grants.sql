-- Data grants (issue 12; PRODUCT.md 7; docs/DESIGN.md "Data grants"):
-- events carry no owner, so what a client's subscriptions may receive is
-- what it is granted. A grant covers a bank (or one account of it), or an
-- acquirer (or one merchant of it). A client's consents grant their
-- accounts too (consent_accounts, 005); the built-in client system is
-- entitled to everything without a row. SQL on grants: common/grant.c.
CREATE TABLE grants (
    id           text PRIMARY KEY,
    seq          bigserial UNIQUE,  -- list order and cursor
    client_id    text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    bank_id      text,
    account_id   text,
    acquirer_id  text,
    merchant_id  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- A bank (optionally one account) or an acquirer (optionally one merchant).
    CHECK ((bank_id IS NULL) <> (acquirer_id IS NULL)),
    CHECK (account_id IS NULL OR bank_id IS NOT NULL),
    CHECK (merchant_id IS NULL OR acquirer_id IS NOT NULL)
);
-- The same grant twice is a conflict, not a second row.
CREATE UNIQUE INDEX grants_unique ON grants (client_id, COALESCE(bank_id, ''),
    COALESCE(account_id, ''), COALESCE(acquirer_id, ''), COALESCE(merchant_id, ''));

-- Workers hold grants beside the subscriptions and reload both when
-- subscriptions_version moves, so a grant added or revoked takes effect
-- within the same second as a subscription change. Consents grant their
-- accounts through the bank's code, so consent accounts and bank codes
-- bump it as well.
CREATE TRIGGER grants_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_bump_version();
CREATE TRIGGER consent_accounts_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON consent_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_bump_version();
CREATE TRIGGER banks_code_changed
    AFTER UPDATE OF code ON banks
    FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code)
    EXECUTE FUNCTION subscriptions_bump_version();
CREATE TRIGGER banks_changed
    AFTER INSERT OR DELETE ON banks
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_bump_version();

-- The accounts a client's consents grant, as bank grants of one account.
-- A consent names banks by code (005): an account at a code no bank has
-- yet grants nothing until the bank is registered (which bumps the version).
CREATE VIEW consent_grants AS
SELECT DISTINCT c.client_id, b.bank_id, ca.account_id
  FROM consents c
  JOIN consent_accounts ca ON ca.consent_id = c.consent_id
  JOIN banks b ON b.code = ca.bank_code AND b.code <> '';
