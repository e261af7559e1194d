-- 0006: depth counters that cannot collide, and a way to repair them.
-- Each backend now writes counter rows of its own (slot = its pid). With pid
-- modulo 16 two backends could share a slot: a transaction that had enqueued
-- held its slot's row until it committed, so a claim or completion of another
-- backend in the same slot waited for it, and two such transactions touching
-- two queues in opposite orders deadlocked. fold_job_counts() merges the rows
-- of backends that have gone into slot 0 (the workers' housekeeping runs it);
-- recount_jobs() rebuilds every counter from the jobs table.

CREATE OR REPLACE FUNCTION workerfleet.count_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
    SELECT d.queue, d.state, pg_backend_pid(), count(*)
    FROM new_rows AS d
    GROUP BY d.queue, d.state
    ORDER BY d.queue, d.state
    ON CONFLICT (queue, state, slot) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION workerfleet.count_jobs_updated() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
    SELECT d.queue, d.state, pg_backend_pid(), sum(d.delta)
    FROM (
        SELECT o.queue, o.state, -1 AS delta FROM old_rows AS o
        UNION ALL
        SELECT n.queue, n.state, 1 AS delta FROM new_rows AS n
    ) AS d
    GROUP BY d.queue, d.state
    HAVING sum(d.delta) <> 0
    ORDER BY d.queue, d.state
    ON CONFLICT (queue, state, slot) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION workerfleet.count_jobs_deleted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
    SELECT d.queue, d.state, pg_backend_pid(), -count(*)
    FROM old_rows AS d
    GROUP BY d.queue, d.state
    ORDER BY d.queue, d.state
    ON CONFLICT (queue, state, slot) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END;
$$;

-- Folds the counter rows of backends that have gone into slot 0 (their slots
-- would otherwise pile up, one set per connection ever made); rows a live
-- writer holds are left for next time. Returns the rows folded.
CREATE FUNCTION workerfleet.fold_job_counts() RETURNS bigint
LANGUAGE sql
AS $$
    WITH gone AS (
        SELECT c.queue, c.state, c.slot
        FROM workerfleet.job_counts AS c
        WHERE c.slot <> 0
            AND NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = c.slot)
        ORDER BY c.queue, c.state, c.slot
        FOR UPDATE OF c SKIP LOCKED
    ), folded AS (
        DELETE FROM workerfleet.job_counts AS c
        USING gone
        WHERE c.queue = gone.queue AND c.state = gone.state AND c.slot = gone.slot
        RETURNING c.queue, c.state, c.n
    ), merged AS (
        INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
        SELECT f.queue, f.state, 0, sum(f.n)
        FROM folded AS f
        GROUP BY f.queue, f.state
        ORDER BY f.queue, f.state
        ON CONFLICT (queue, state, slot) DO UPDATE SET n = c.n + excluded.n
        RETURNING 1
    )
    SELECT count(*) FROM folded
$$;

-- Rebuilds every counter from the jobs table (after a bulk load with triggers
-- off, say) and returns, per queue and state, the true count and how far the
-- counters were off. Counter writers hold ROW EXCLUSIVE on job_counts from their
-- trigger until they commit: the lock taken here waits for those in flight and
-- holds back new ones, so the count and the counters agree when this commits.
-- The depth query keeps reading meanwhile; writers wait for one count of the
-- jobs table, and at most 10 s for a transaction that holds a counter row.
CREATE FUNCTION workerfleet.recount_jobs()
RETURNS TABLE (queue text, state text, counted bigint, drift bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    previous_lock_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', '10s', true);
    LOCK TABLE workerfleet.job_counts IN SHARE ROW EXCLUSIVE MODE;
    PERFORM set_config('lock_timeout', previous_lock_timeout, true);
    RETURN QUERY
    WITH truth AS (
        SELECT j.queue, j.state, count(*)::bigint AS n
        FROM workerfleet.jobs AS j
        GROUP BY j.queue, j.state
    ), recorded AS (
        SELECT c.queue, c.state, sum(c.n)::bigint AS n
        FROM workerfleet.job_counts AS c
        GROUP BY c.queue, c.state
    )
    SELECT coalesce(t.queue, r.queue), coalesce(t.state, r.state),
        coalesce(t.n, 0), coalesce(r.n, 0) - coalesce(t.n, 0)
    FROM truth AS t
    FULL JOIN recorded AS r ON r.queue = t.queue AND r.state = t.state
    ORDER BY 1, 2;
    DELETE FROM workerfleet.job_counts;
    INSERT INTO workerfleet.job_counts (queue, state, slot, n)
    SELECT j.queue, j.state, 0, count(*)
    FROM workerfleet.jobs AS j
    GROUP BY j.queue, j.state;
END;
$$;

-- Rows of the old slots (0 to 15) fold into slot 0 like any other gone backend's.
SELECT workerfleet.fold_job_counts();
