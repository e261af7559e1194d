-- 0005: recovery keeps a job's place in line.
-- A job whose run was lost (its lease expired, or its worker was found dead)
-- goes back to pending with its original run_at, so it runs before the backlog
-- enqueued after it instead of behind it. rescues counts how often that
-- happened to the job: from the second time on it waits a growing delay
-- instead, so a job that kills its worker (a poison pill) cannot keep jumping
-- the queue.
ALTER TABLE workerfleet.jobs
    ADD COLUMN rescues integer NOT NULL DEFAULT 0
        CONSTRAINT jobs_rescues_valid CHECK (rescues >= 0);

-- When a job rescued from a lost run may run again, given the rescues before
-- this one: at its own run_at the first time, then after backoff_seconds x
-- 2^(rescues - 1), at most cap_seconds. Inlined by the planner (plain SQL).
CREATE FUNCTION workerfleet.rescued_run_at(
    run_at timestamptz,
    rescues integer,
    backoff_seconds float8,
    cap_seconds float8
) RETURNS timestamptz
LANGUAGE sql
STABLE
AS $$
    SELECT CASE
        WHEN rescues = 0 THEN run_at
        ELSE now() + make_interval(
            secs => least(cap_seconds, backoff_seconds * power(2, least(rescues - 1, 60)))
        )
    END
$$;
