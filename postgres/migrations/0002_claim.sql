-- Version 2: Claim is one call of webhook_claim in one round trip, which
-- takes the place of webhook_claim_targets and the statements around it.

DROP FUNCTION webhook_claim_targets(timestamptz, integer, integer, text[], integer[], text[]);

-- Claim, in one statement: see claim.go for what it does and why. Its
-- statements are planned as those of Claim's and Settle's transactions
-- are (see asyncSettings in queue.go): generic plans, made once a session,
-- that reach the tables through the indexes of 0001_init.sql, whatever the planner
-- would estimate, and no JIT compilation.
CREATE TYPE webhook_claim_candidate AS (sp integer, target text, id text, due timestamptz, seq bigint);

-- webhook_claim_quotas returns, for spaces that have p_leased deliveries
-- leased each, how many of p_limit more each may get when they are taken
-- one at a time from the space with the fewest: the level that p_limit
-- more fill up to, less what each has, which is what it gets if every
-- space has enough and ties go its way.
CREATE FUNCTION webhook_claim_quotas(p_leased integer[], p_limit integer) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	lo integer := p_leased[1];
	hi integer;
	mid integer;
	fill bigint;
	l integer;
	out integer[] := '{}';
BEGIN
	FOREACH l IN ARRAY p_leased LOOP
		lo := least(lo, l);
	END LOOP;
	hi := lo + p_limit; -- fills at least p_limit
	WHILE lo < hi LOOP
		mid := lo + (hi - lo) / 2;
		fill := 0;
		FOREACH l IN ARRAY p_leased LOOP
			fill := fill + greatest(0, mid - l);
		END LOOP;
		IF fill >= p_limit THEN
			hi := mid;
		ELSE
			lo := mid + 1;
		END IF;
	END LOOP;
	FOREACH l IN ARRAY p_leased LOOP
		out := out || least(p_limit, greatest(0, lo - l));
	END LOOP;
	RETURN out;
END
$$;

-- webhook_claim leases until p_lease_end, and returns in the order taken,
-- up to p_limit ready deliveries due by p_now, at most p_per leased a
-- target, the spaces served fairly (see Queue.Claim).
--
-- It returns to pending the deliveries whose lease ended, and ends the
-- pauses that have, once a look at the indexes says there are some. It
-- counts the leased deliveries of every space that has ready work, locks
-- (FOR UPDATE SKIP LOCKED) the first ready targets of the spaces that may
-- get some of p_limit, reads their earliest ready deliveries in a
-- statement of its own, whose snapshot is taken once they are locked and
-- so sees every change of them, and takes the deliveries one at a time as
-- the fairness between spaces says. A space's candidates are its next
-- deliveries in the claim order for sure as far as it has locked targets
-- that gave one (a target's earliest delivery is never earlier than those
-- of the targets before it), or once every ready target of it is locked
-- (complete); a space that might come next and has no delivery it is sure
-- of gets more targets locked, at most 8 rounds a call, past which it takes
-- what it has. A target locked by another claimer is skipped: that one
-- claims from it. Last it leases what it took and moves its targets'
-- heads past it (see nextHead in queue.go).
CREATE FUNCTION webhook_claim(p_now timestamptz, p_limit integer, p_lease_end timestamptz, p_per integer)
RETURNS TABLE (c_id text, c_space text, c_webhook_id text, c_target text, c_event_ids json, c_body bytea,
	c_created timestamptz, c_attempts integer, c_due timestamptz, c_last_status integer, c_last_error text)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET jit = off
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
	sp_name text[];
	sp_leased integer[];     -- leased deliveries, those taken included
	sp_taken integer[];      -- taken by this call
	sp_nonempty integer[];   -- locked targets that gave a candidate
	sp_complete boolean[];   -- every ready target of the space is locked
	sp_head integer[];       -- the place in cands of its next candidate
	sp_end integer[];        -- the place in cands of its last; below sp_head when none
	want integer[];          -- per space, how many more targets to lock; NULL: none
	got integer[];
	cands webhook_claim_candidate[] := '{}'; -- by (sp, due, seq)
	fresh webhook_claim_candidate[];
	rest webhook_claim_candidate[];
	locked text[] := '{}';
	lt text[];
	lsp integer[];
	lleased integer[];
	ldue timestamptz[];
	lseq bigint[];
	picked_id text[] := '{}';
	picked_target text[] := '{}';
	n integer;
	best integer;
	rounds integer := 0;
	more boolean;
	c webhook_claim_candidate;
	cb webhook_claim_candidate;
	prev text;
	i integer;
	k integer;
BEGIN
	-- Ended leases and pauses, rare: the indexes say whether there are any.
	IF (SELECT d.lease_until FROM webhook_deliveries d WHERE d.lease_until <= p_now
			ORDER BY d.lease_until LIMIT 1) IS NOT NULL
		OR (SELECT t.paused_until FROM webhook_targets t WHERE t.paused AND t.paused_until <= p_now
			ORDER BY t.paused_until LIMIT 1) IS NOT NULL THEN
		PERFORM 1 FROM webhook_targets WHERE target IN (
			SELECT d.target FROM webhook_deliveries d WHERE d.lease_until <= p_now
			UNION
			SELECT t.target FROM webhook_targets t WHERE t.paused AND t.paused_until <= p_now)
		ORDER BY target FOR UPDATE;
		WITH freed AS (
			UPDATE webhook_deliveries d SET lease_until = NULL WHERE d.lease_until <= p_now
			RETURNING d.target, d.due, d.seq
		), first AS (
			SELECT DISTINCT ON (f.target) f.target, f.due, f.seq, count(*) OVER (PARTITION BY f.target) AS n
			FROM freed f ORDER BY f.target, f.due, f.seq
		)
		UPDATE webhook_targets t SET leased = t.leased - f.n,
			next_due = CASE WHEN t.next_due IS NULL OR (f.due, f.seq) < (t.next_due, t.next_seq) THEN f.due ELSE t.next_due END,
			next_seq = CASE WHEN t.next_due IS NULL OR (f.due, f.seq) < (t.next_due, t.next_seq) THEN f.seq ELSE t.next_seq END
		FROM first f WHERE t.target = f.target;
		UPDATE webhook_targets t SET paused = false WHERE t.paused AND t.paused_until <= p_now;
	END IF;

	-- The spaces that have a target ready to claim from, and their leased
	-- deliveries: the distinct spaces are walked through the index, one
	-- probe a space, not the targets; so is each space's first target
	-- that may give a delivery now (a subquery with a LIMIT, which the
	-- planner does not turn into a join that reads every ready target).
	WITH RECURSIVE s(space) AS (
		SELECT min(t.space) FROM webhook_targets t WHERE t.next_due IS NOT NULL AND NOT t.paused
		UNION ALL
		SELECT (SELECT min(t.space) FROM webhook_targets t
			WHERE t.next_due IS NOT NULL AND NOT t.paused AND t.space > s.space)
		FROM s WHERE s.space IS NOT NULL
	)
	SELECT array_agg(s.space ORDER BY s.space),
		array_agg((SELECT coalesce(sum(l.leased), 0)::integer FROM webhook_targets l
			WHERE l.space = s.space AND l.leased > 0) ORDER BY s.space)
	INTO sp_name, sp_leased
	FROM s
	CROSS JOIN LATERAL (
		SELECT FROM webhook_targets t
		WHERE t.space = s.space AND t.next_due IS NOT NULL AND NOT t.paused AND t.next_due <= p_now
			AND t.ready_at <= p_now AND t.leased < p_per
		ORDER BY t.next_due, t.next_seq
		LIMIT 1) AS ready
	WHERE s.space IS NOT NULL;
	n := coalesce(cardinality(sp_name), 0);
	IF n = 0 THEN
		RETURN;
	END IF;
	sp_taken := array_fill(0, ARRAY[n]);
	sp_nonempty := array_fill(0, ARRAY[n]);
	sp_complete := array_fill(false, ARRAY[n]);
	sp_head := array_fill(1, ARRAY[n]);
	sp_end := array_fill(0, ARRAY[n]);
	want := webhook_claim_quotas(sp_leased, p_limit);

	LOOP
		IF want IS NOT NULL THEN
			-- Lock up to want[i] more ready targets of each space i, earliest
			-- ready delivery first.
			SELECT coalesce(array_agg(l.target), '{}'), coalesce(array_agg(l.sp), '{}'),
				coalesce(array_agg(l.leased), '{}'), coalesce(array_agg(l.next_due), '{}'),
				coalesce(array_agg(l.next_seq), '{}')
			INTO lt, lsp, lleased, ldue, lseq
			FROM unnest(sp_name, want) WITH ORDINALITY AS p(space, quota, sp)
			CROSS JOIN LATERAL (
				SELECT wt.target, p.sp::integer AS sp, wt.leased, wt.next_due, wt.next_seq
				FROM webhook_targets wt
				WHERE p.quota > 0 AND wt.space = p.space AND wt.next_due <= p_now AND NOT wt.paused
					AND wt.ready_at <= p_now AND wt.leased < p_per AND wt.target <> ALL(locked)
				ORDER BY wt.next_due, wt.next_seq
				LIMIT p.quota
				FOR UPDATE SKIP LOCKED) AS l;
			locked := locked || lt;
			got := array_fill(0, ARRAY[n]);
			FOREACH i IN ARRAY lsp LOOP
				got[i] := got[i] + 1;
			END LOOP;
			FOR i IN 1..n LOOP
				IF want[i] > 0 THEN
					sp_complete[i] := got[i] < want[i];
				END IF;
			END LOOP;
			-- Their first ready deliveries due by now, as many as each may
			-- lease, read once they are locked.
			SELECT coalesce(array_agg(ROW(l.sp, l.target, x.id, x.due, x.seq)::webhook_claim_candidate
				ORDER BY l.sp, l.target, x.due, x.seq), '{}')
			INTO fresh
			FROM unnest(lt, lsp, lleased, ldue, lseq) AS l(target, sp, leased, next_due, next_seq)
			CROSS JOIN LATERAL (
				SELECT d.id, d.due, d.seq FROM webhook_deliveries d
				WHERE d.target = l.target AND d.lease_until IS NULL AND d.died IS NULL AND d.due <= p_now
					AND (d.due, d.seq) >= (l.next_due, l.next_seq)
				ORDER BY d.due, d.seq
				LIMIT least(p_per - l.leased, p_limit)) AS x;
			prev := NULL;
			FOREACH c IN ARRAY fresh LOOP
				IF c.target IS DISTINCT FROM prev THEN
					sp_nonempty[c.sp] := sp_nonempty[c.sp] + 1;
					prev := c.target;
				END IF;
			END LOOP;
			-- The candidates not taken yet and the new ones, by (space, due,
			-- seq).
			rest := '{}';
			FOR i IN 1..n LOOP
				IF sp_head[i] <= sp_end[i] THEN
					rest := rest || cands[sp_head[i]:sp_end[i]];
				END IF;
			END LOOP;
			SELECT coalesce(array_agg(ROW(x.sp, x.target, x.id, x.due, x.seq)::webhook_claim_candidate
				ORDER BY x.sp, x.due, x.seq), '{}')
			INTO cands
			FROM (SELECT * FROM unnest(rest) UNION ALL SELECT * FROM unnest(fresh)) AS x;
			sp_head := array_fill(1, ARRAY[n]);
			sp_end := array_fill(0, ARRAY[n]);
			FOR k IN 1..coalesce(cardinality(cands), 0) LOOP
				c := cands[k];
				IF sp_end[c.sp] < sp_head[c.sp] THEN
					sp_head[c.sp] := k;
				END IF;
				sp_end[c.sp] := k;
			END LOOP;
			want := NULL;
		END IF;
		EXIT WHEN cardinality(picked_id) >= p_limit;

		-- The space to take from: the fewest leased, then the earliest
		-- candidate, among those whose next candidate is sure.
		best := 0;
		FOR i IN 1..n LOOP
			IF sp_head[i] <= sp_end[i] AND (sp_complete[i] OR sp_taken[i] < sp_nonempty[i]) THEN
				c := cands[sp_head[i]];
				IF best = 0 OR sp_leased[i] < sp_leased[best]
					OR (sp_leased[i] = sp_leased[best] AND (c.due, c.seq) < (cb.due, cb.seq)) THEN
					best := i;
					cb := c;
				END IF;
			END IF;
		END LOOP;
		-- The spaces that might come before it and need more targets.
		more := false;
		FOR i IN 1..n LOOP
			IF NOT (sp_head[i] <= sp_end[i] AND (sp_complete[i] OR sp_taken[i] < sp_nonempty[i]))
				AND NOT sp_complete[i] AND (best = 0 OR sp_leased[i] <= sp_leased[best]) THEN
				IF NOT more THEN
					want := array_fill(0, ARRAY[n]);
					more := true;
				END IF;
				want[i] := p_limit - cardinality(picked_id);
			END IF;
		END LOOP;
		IF more AND rounds < 8 THEN
			rounds := rounds + 1;
			CONTINUE;
		END IF;
		want := NULL;
		EXIT WHEN best = 0;
		picked_id := picked_id || cb.id;
		picked_target := picked_target || cb.target;
		sp_head[best] := sp_head[best] + 1;
		sp_taken[best] := sp_taken[best] + 1;
		sp_leased[best] := sp_leased[best] + 1;
	END LOOP;
	IF cardinality(picked_id) = 0 THEN
		RETURN;
	END IF;

	RETURN QUERY
	WITH l AS (
		UPDATE webhook_deliveries d SET lease_until = p_lease_end WHERE d.id = ANY(picked_id)
		RETURNING d.id, d.space, d.webhook_id, d.target, d.event_ids, d.body, d.created, d.attempts,
			d.due, d.last_status, d.last_error)
	SELECT l.* FROM unnest(picked_id) WITH ORDINALITY AS p(id, ord) JOIN l ON l.id = p.id ORDER BY p.ord;
	-- The targets' leases, and their heads past what was leased: every
	-- ready delivery of a target is at or after its head.
	UPDATE webhook_targets t SET leased = t.leased + u.n,
		(next_due, next_seq) = (
			SELECT d.due, d.seq FROM webhook_deliveries d
			WHERE d.target = t.target AND d.lease_until IS NULL AND d.died IS NULL
				AND (d.due, d.seq) >= (t.next_due, t.next_seq)
			ORDER BY d.due, d.seq LIMIT 1)
	FROM (SELECT x.target, count(*)::integer AS n FROM unnest(picked_target) AS x(target) GROUP BY x.target) AS u
	WHERE t.target = u.target;
END
$$;
