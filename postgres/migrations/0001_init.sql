-- Version 1: registrations and the delivery queue.

-- Registrations, one row per registration key: its latest state. A deleted
-- registration keeps its row as a tombstone, so that replicas following
-- the changes by version see the deletion and a key is never reused.
CREATE TABLE webhook_registrations (
	key             text PRIMARY KEY,
	space           text NOT NULL,
	id              text NOT NULL,
	version         bigint NOT NULL,
	deleted         boolean NOT NULL DEFAULT false,
	url             text NOT NULL DEFAULT '',
	events          text[] NOT NULL DEFAULT '{}',
	options         jsonb NOT NULL DEFAULT '{}',
	insecure_ssl    boolean NOT NULL DEFAULT false,
	signature       text NOT NULL DEFAULT '',
	created         timestamptz,
	modified        timestamptz,
	disabled_at     timestamptz,
	disabled_reason text
);
-- One live registration per (space, id); tombstones do not count.
CREATE UNIQUE INDEX webhook_registrations_live ON webhook_registrations (space, id) WHERE NOT deleted;
-- Changes reads by version; Write takes max(version) + 1.
CREATE UNIQUE INDEX webhook_registrations_version ON webhook_registrations (version);

-- What the queue knows of each target (a registration key): how many of
-- its deliveries it holds and has leased, where its earliest ready
-- delivery is, its pause and its health. Claim finds work here instead of
-- scanning the deliveries.
CREATE TABLE webhook_targets (
	target        text PRIMARY KEY,
	space         text NOT NULL,
	held          integer NOT NULL DEFAULT 0, -- pending and leased deliveries
	leased        integer NOT NULL DEFAULT 0, -- deliveries whose lease has not been swept
	next_due      timestamptz,                -- (due, seq) of the earliest ready delivery; NULL when none
	next_seq      bigint,
	paused_until  timestamptz,                -- kept after it passed, as the pause to beat
	paused        boolean NOT NULL DEFAULT false, -- paused_until has not passed, as far as Claim knows
	-- When the earliest ready delivery may be claimed: its due time, or
	-- the end of the pause if that is later.
	ready_at      timestamptz GENERATED ALWAYS AS (
		CASE WHEN next_due IS NULL THEN NULL ELSE greatest(next_due, paused_until) END) STORED,
	failures      integer NOT NULL DEFAULT 0,
	failing_since timestamptz
-- Every Enqueue, Claim and Settle updates rows here: vacuumed often, so
-- that the indexes stay small.
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
-- Claim walks a space's targets in the order of their earliest delivery.
-- Paused targets are not in it, so that a space of many paused targets
-- costs nothing to walk; Claim ends the pauses that have passed.
CREATE INDEX webhook_targets_claim ON webhook_targets (space, next_due, next_seq)
	WHERE next_due IS NOT NULL AND NOT paused;
-- The pauses, for Claim to end those that have passed.
CREATE INDEX webhook_targets_paused ON webhook_targets (paused_until) WHERE paused;
-- NextDue.
CREATE INDEX webhook_targets_ready ON webhook_targets (ready_at) WHERE ready_at IS NOT NULL;
-- Leased deliveries per space, for the fairness between spaces.
CREATE INDEX webhook_targets_leased ON webhook_targets (space) INCLUDE (leased) WHERE leased > 0;

CREATE SEQUENCE webhook_delivery_seq;   -- enqueue order
CREATE SEQUENCE webhook_delivery_death; -- the order in which deliveries died

-- Deliveries: ready (lease_until and died NULL), leased (lease_until set)
-- or dead (died set).
CREATE TABLE webhook_deliveries (
	id          text PRIMARY KEY,
	seq         bigint NOT NULL,
	target      text NOT NULL,
	space       text NOT NULL,
	webhook_id  text NOT NULL,
	event_ids   json NOT NULL,        -- a JSON array of strings
	body        bytea NOT NULL,
	created     timestamptz NOT NULL,
	attempts    integer NOT NULL,
	due         timestamptz NOT NULL,
	last_status integer NOT NULL,
	last_error  text NOT NULL,
	lease_until timestamptz,
	died        bigint
-- Vacuumed after 5% of the rows changed, not the default 20%: claims and
-- acknowledgements leave dead rows behind the heads of the targets.
) WITH (autovacuum_vacuum_scale_factor = 0.05);
-- A target's ready deliveries in claim order.
CREATE INDEX webhook_deliveries_ready ON webhook_deliveries (target, due, seq) WHERE lease_until IS NULL AND died IS NULL;
-- Leases, for the sweep of ended ones and NextDue.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_until, target) WHERE lease_until IS NOT NULL;
-- A target's dead deliveries in the order they died.
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (target, died) WHERE died IS NOT NULL;

-- Pending and leased deliveries in all, spread over rows (one per
-- connection, by backend pid) so that Enqueues do not queue up behind one
-- row lock; their sum is the total.
CREATE TABLE webhook_queue_counts (
	shard integer PRIMARY KEY,
	held  bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- Claim's second step: lock up to quota ready targets of each space
-- (FOR UPDATE SKIP LOCKED), earliest ready delivery first, leaving out
-- those given, and return of each the first ready deliveries due by now
-- that it may lease, or one row without a delivery if it has none. The
-- deliveries of each target are read by a statement of their own, whose
-- snapshot is taken once the target is locked and so sees every change
-- of them: a function does in one round trip what would otherwise take
-- two. They are read from the target's head on (see nextHead in
-- queue.go).
CREATE FUNCTION webhook_claim_targets(p_now timestamptz, p_per integer, p_limit integer,
	p_spaces text[], p_quotas integer[], p_exclude text[])
RETURNS TABLE (c_target text, c_space text, c_id text, c_due timestamptz, c_seq bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT l.target, l.space, l.leased, l.next_due, l.next_seq
		FROM unnest(p_spaces, p_quotas) AS p(space, quota)
		CROSS JOIN LATERAL (
			SELECT wt.target, wt.space, wt.leased, wt.next_due, wt.next_seq FROM webhook_targets wt
			WHERE wt.space = p.space AND wt.next_due <= p_now AND NOT wt.paused AND wt.ready_at <= p_now
				AND wt.leased < p_per AND wt.target <> ALL(p_exclude)
			ORDER BY wt.next_due, wt.next_seq
			LIMIT p.quota
			FOR UPDATE SKIP LOCKED) AS l
	LOOP
		RETURN QUERY
			SELECT t.target, t.space, d.id, d.due, d.seq FROM webhook_deliveries d
			WHERE d.target = t.target AND d.lease_until IS NULL AND d.died IS NULL AND d.due <= p_now
				AND (d.due, d.seq) >= (t.next_due, t.next_seq)
			ORDER BY d.due, d.seq
			LIMIT least(p_per - t.leased, p_limit);
		IF NOT FOUND THEN
			c_target := t.target;
			c_space := t.space;
			c_id := NULL;
			c_due := NULL;
			c_seq := NULL;
			RETURN NEXT;
		END IF;
	END LOOP;
END
$$;

-- Refuses a statement with an error of SQLSTATE code: Enqueue checks its
-- bounds in the statement that stores the deliveries, so that a refused
-- call fails, and rolls back, without a round trip more.
CREATE FUNCTION webhook_refuse(code text, message text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
END
$$;
