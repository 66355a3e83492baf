-- Delivery engine (issue 3): per-subscription ordering and rate limit,
-- retry schedules that restart on a manual retry or replay, Retry-After
-- on record, and the indexes the scheduler's claim and retention need.

-- ordered: at most one delivery of the subscription in flight, the next
-- waits until the previous one succeeded or finally failed.
-- rate_limit_per_s: requests per second to the subscription (NULL: none).
ALTER TABLE subscriptions
    ADD COLUMN ordered boolean NOT NULL DEFAULT false,
    ADD COLUMN rate_limit_per_s integer
        CHECK (rate_limit_per_s IS NULL OR rate_limit_per_s BETWEEN 1 AND 10000);

-- The retry schedule index is attempts - schedule_base: a manual retry or
-- a replay sets schedule_base = attempts, so the schedule starts over
-- while the attempt numbers keep counting.
ALTER TABLE deliveries ADD COLUMN schedule_base integer NOT NULL DEFAULT 0;

-- The Retry-After a receiver asked for on 429/503, in seconds (bounded).
ALTER TABLE attempts ADD COLUMN retry_after_s integer;

-- Ordered subscriptions: "the oldest pending delivery of this
-- subscription" for the scheduler's claim and the worker's hand-over.
CREATE INDEX deliveries_pending_subscription
    ON deliveries (subscription_id, seq) WHERE status = 'pending';
-- Replay of a time window of one subscription.
CREATE INDEX deliveries_subscription_created ON deliveries (subscription_id, created_at);
-- Retention: attempts by age (events already have events_received).
CREATE INDEX attempts_started ON attempts (started_at);
