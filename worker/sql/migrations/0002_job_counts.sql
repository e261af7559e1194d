-- 0002 job counts: per (queue, state) counters kept by statement triggers, so
-- the depth query reads a few hundred counter rows instead of counting millions
-- of jobs. Each backend writes its own slot (pid modulo the slot count), so
-- concurrent claimers and completers do not queue up behind one counter row.

CREATE TABLE workerfleet.job_counts (
    queue text NOT NULL,
    state text NOT NULL,
    slot integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (queue, state, slot)
);

CREATE FUNCTION workerfleet.count_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
    SELECT d.queue, d.state, pg_backend_pid() % 16, count(*)
    FROM new_rows AS d
    GROUP BY d.queue, d.state
    ORDER BY d.queue, d.state
    ON CONFLICT (queue, state, slot) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END;
$$;

CREATE FUNCTION workerfleet.count_jobs_updated() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
    SELECT d.queue, d.state, pg_backend_pid() % 16, sum(d.delta)
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

CREATE FUNCTION workerfleet.count_jobs_deleted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workerfleet.job_counts AS c (queue, state, slot, n)
    SELECT d.queue, d.state, pg_backend_pid() % 16, -count(*)
    FROM old_rows AS d
    GROUP BY d.queue, d.state
    ORDER BY d.queue, d.state
    ON CONFLICT (queue, state, slot) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END;
$$;

CREATE FUNCTION workerfleet.count_jobs_truncated() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM workerfleet.job_counts;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_count_inserted AFTER INSERT ON workerfleet.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workerfleet.count_jobs_inserted();

CREATE TRIGGER jobs_count_updated AFTER UPDATE ON workerfleet.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workerfleet.count_jobs_updated();

CREATE TRIGGER jobs_count_deleted AFTER DELETE ON workerfleet.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workerfleet.count_jobs_deleted();

CREATE TRIGGER jobs_count_truncated AFTER TRUNCATE ON workerfleet.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION workerfleet.count_jobs_truncated();

-- Jobs that exist before this migration are counted once, here.
INSERT INTO workerfleet.job_counts (queue, state, slot, n)
SELECT queue, state, 0, count(*) FROM workerfleet.jobs GROUP BY queue, state;
