-- Idempotency keys of the publish routes (issue 13; docs/DESIGN.md
-- "Publishing: batch and idempotency"). The first request with a key
-- inserts its row (answer still NULL) before it produces anything, so a
-- concurrent duplicate finds the row and produces nothing; the answer
-- (status and body) is filled in once it is known, and replayed to every
-- later request with the same key for 24 hours. A row past expires_at is
-- dead: reads ignore it and the next request with that key takes it over;
-- the scheduler's retention deletes them. SQL on this table:
-- common/idempotency.c.
CREATE TABLE idempotency_keys (
    client_id     text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  text NOT NULL,  -- SHA-256 of method, route and canonical body
    status        integer,        -- NULL: the first request is still running
    body          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
