-- Open Bank Project dialect (api/dialect_obp.c): the management list of a
-- bank's account webhooks filters on kind and bank and pages by creation
-- order (seq); system-level notification webhooks have bank_id NULL and
-- are not listed there.
CREATE INDEX subscriptions_obp_account_bank
    ON subscriptions (bank_id, seq) WHERE kind = 'obp_account';
