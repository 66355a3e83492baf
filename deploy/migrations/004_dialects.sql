-- Banksocket and acquirer dialects (issue 6; api/dialect_banksocket.c,
-- api/dialect_acquirer.c).

-- Banksocket lists a client's webhooks by their integer id (seq).
CREATE INDEX subscriptions_banksocket_client
    ON subscriptions (client_id, seq) WHERE kind = 'banksocket';

-- An acquirer notification configuration is one subscription, found by
-- its code within the client; the unique index also settles two
-- concurrent first INS of the same code (the loser updates instead).
CREATE UNIQUE INDEX subscriptions_acquirer_code
    ON subscriptions (client_id, (options->>'notificationConfigurationCode'))
    WHERE kind = 'acquirer';
