-- The whole current schema of the workerfleet queue, in one file to read.
-- Databases are built by the numbered migrations in migrations/; a test
-- proves that applying them yields exactly this schema (compared with
-- pg_dump --schema-only), so change both together.
CREATE SCHEMA IF NOT EXISTS workerfleet;

CREATE TABLE IF NOT EXISTS workerfleet.schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workerfleet.jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL
        CONSTRAINT jobs_queue_name_valid CHECK (queue ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    task text NOT NULL
        CONSTRAINT jobs_task_valid CHECK (length(task) BETWEEN 1 AND 200),
    payload jsonb,
    priority integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'pending'
        CONSTRAINT jobs_state_valid
        CHECK (state IN ('pending', 'running', 'succeeded', 'dead', 'cancelled')),
    attempt integer NOT NULL DEFAULT 0 CONSTRAINT jobs_attempt_valid CHECK (attempt >= 0),
    -- NULL until the first claim: the claiming worker gives its WORKERFLEET_MAX_ATTEMPTS.
    max_attempts integer
        CONSTRAINT jobs_max_attempts_valid CHECK (max_attempts >= 1),
    run_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    worker_id text,
    lease_expires_at timestamptz,
    last_error text,
    last_traceback text,
    result jsonb,
    unique_key text,
    -- How often a run of this job was lost (lease expired, worker dead) and it was
    -- put back: the first time it keeps its place in line, later ones back off.
    rescues integer NOT NULL DEFAULT 0 CONSTRAINT jobs_rescues_valid CHECK (rescues >= 0),
    -- The enqueuer's trace context (a W3C carrier), continued by the worker.
    trace_context jsonb,
    -- A running job always has a holder and a lease: fencing and recovery rely on it.
    CONSTRAINT jobs_running_is_leased
        CHECK (state <> 'running' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    -- Failing, rescuing and reaping compare the attempt with it.
    CONSTRAINT jobs_running_has_max_attempts
        CHECK (state <> 'running' OR max_attempts IS NOT NULL)
);

-- Claimable rows only, in claim order: the claim reads the head of this index.
CREATE INDEX jobs_claimable_idx ON workerfleet.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'pending';

-- Oldest pending age and the scheduled (future run_at) count, per queue. The
-- always-true "priority IS NOT NULL" keeps the claim off this index: only the
-- stats query states it (see migrations/0003).
CREATE INDEX jobs_pending_run_at_idx ON workerfleet.jobs (queue, run_at)
    WHERE state = 'pending' AND priority IS NOT NULL;

-- Running jobs by holder: reaping a dead worker, and the lease scan (few rows).
CREATE INDEX jobs_running_worker_idx ON workerfleet.jobs (worker_id)
    WHERE state = 'running';

-- Retention and "finished in the last minute".
CREATE INDEX jobs_finished_at_idx ON workerfleet.jobs (finished_at)
    WHERE state IN ('succeeded', 'dead', 'cancelled');

-- A unique key names at most one live (pending or running) job per queue.
CREATE UNIQUE INDEX jobs_unique_key_idx ON workerfleet.jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');

CREATE TABLE workerfleet.workers (
    id text PRIMARY KEY,
    pool text NOT NULL,
    queues text[] NOT NULL DEFAULT '{}',
    pod text,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'online'
        CONSTRAINT workers_state_valid CHECK (state IN ('online', 'draining', 'offline', 'dead')),
    current_jobs integer NOT NULL DEFAULT 0,
    jobs_succeeded bigint NOT NULL DEFAULT 0,
    jobs_failed bigint NOT NULL DEFAULT 0,
    version text,
    -- Set when the operator asked this worker to drain before a scale-in (see
    -- migrations/0007); NULL when it runs freely or drains on its own (SIGTERM).
    drain_requested_at timestamptz
);

CREATE INDEX workers_pool_idx ON workerfleet.workers (pool);

-- Any language can enqueue: SELECT workerfleet.enqueue('emails', 'send', '{"to": "a@b"}');
-- NULL for an optional argument means its default; a NULL max_attempts is filled in
-- by the worker that first claims the job (its WORKERFLEET_MAX_ATTEMPTS). Returns the
-- job id; with a unique_key that is already pending or running, the id of that job instead.
-- trace_context is the enqueuer's trace context (a W3C carrier such as
-- {"traceparent": "00-..."}), which the worker continues (see worker/tracing.py).
CREATE FUNCTION workerfleet.enqueue(
    queue text,
    task text,
    payload jsonb DEFAULT NULL,
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    unique_key text DEFAULT NULL,
    trace_context jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    job_id bigint;
    effective_run_at timestamptz := coalesce(enqueue.run_at, now());
BEGIN
    IF enqueue.queue IS NULL OR enqueue.queue !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid queue name %: queue must match ^[a-z0-9][a-z0-9_.-]{0,62}$',
            coalesce(quote_literal(enqueue.queue), 'NULL')
            USING ERRCODE = 'check_violation';
    END IF;
    IF enqueue.task IS NULL OR length(enqueue.task) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid task name %: task must be 1 to 200 characters',
            coalesce(quote_literal(enqueue.task), 'NULL')
            USING ERRCODE = 'check_violation';
    END IF;
    -- A concurrent holder of the key may finish between our insert and our
    -- look-up; then the key is free again and the next round inserts.
    LOOP
        INSERT INTO workerfleet.jobs AS j
            (queue, task, payload, priority, run_at, max_attempts, unique_key, trace_context)
        VALUES (
            enqueue.queue, enqueue.task, enqueue.payload, coalesce(enqueue.priority, 0),
            effective_run_at, enqueue.max_attempts, enqueue.unique_key, enqueue.trace_context
        )
        ON CONFLICT (queue, unique_key)
            WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')
            DO NOTHING
        RETURNING j.id INTO job_id;
        IF job_id IS NOT NULL THEN
            IF effective_run_at <= now() THEN
                PERFORM pg_notify('workerfleet_jobs', enqueue.queue);
            END IF;
            RETURN job_id;
        END IF;
        SELECT j.id INTO job_id FROM workerfleet.jobs AS j
        WHERE j.queue = enqueue.queue AND j.unique_key = enqueue.unique_key
            AND j.state IN ('pending', 'running');
        IF job_id IS NOT NULL THEN
            RETURN job_id;
        END IF;
    END LOOP;
END;
$$;

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

-- Per (queue, state) job counters kept by statement triggers: the depth query
-- sums these few rows instead of counting millions of jobs. Each backend writes
-- rows of its own (slot = its pid), so concurrent writers never wait on one
-- another's counter rows; slot 0 holds what fold_job_counts() and
-- recount_jobs() merged.
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
    SELECT d.queue, d.state, pg_backend_pid(), count(*)
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

CREATE FUNCTION workerfleet.count_jobs_deleted() RETURNS trigger
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

-- Failed attempts (retried or dead, including attempts lost with their worker) and
-- dead-lettered jobs per queue and minute, added to by fail, bury, rescue and reap
-- (see migrations/0008); queue_stats reads the last hour. Each backend writes its
-- own slot (its pid), so no two backends lock one row.
CREATE TABLE workerfleet.job_failures (
    queue text NOT NULL,
    minute timestamptz NOT NULL,
    slot integer NOT NULL,
    failed bigint NOT NULL,
    dead bigint NOT NULL,
    PRIMARY KEY (queue, minute, slot)
);

-- Periodic jobs (see migrations/0009): a schedule per (pool, name), declared by the
-- operator (spec.schedules) or a worker's handlers module (@task(schedule=...)).
CREATE TABLE workerfleet.schedules (
    pool text NOT NULL,
    name text NOT NULL,
    source text NOT NULL
        CONSTRAINT schedules_source_valid CHECK (source IN ('operator', 'worker')),
    queue text NOT NULL
        CONSTRAINT schedules_queue_name_valid CHECK (queue ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    task text NOT NULL
        CONSTRAINT schedules_task_valid CHECK (length(task) BETWEEN 1 AND 200),
    cron text NOT NULL,
    time_zone text NOT NULL,
    payload jsonb,
    priority integer NOT NULL DEFAULT 0,
    max_attempts integer
        CONSTRAINT schedules_max_attempts_valid CHECK (max_attempts >= 1),
    starting_deadline_seconds double precision
        CONSTRAINT schedules_starting_deadline_valid CHECK (starting_deadline_seconds >= 0),
    suspended boolean NOT NULL DEFAULT false,
    -- Runs at or before this are neither enqueued nor missed: when the schedule was
    -- registered, or last changed its times (cron, time zone) or resumed.
    since timestamptz NOT NULL,
    last_scheduled_at timestamptz,
    last_job_id bigint,
    missed_runs bigint NOT NULL DEFAULT 0,
    last_missed_at timestamptz,
    next_run_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, name)
);

-- One row per run enqueued: the primary key is the run's unique key.
CREATE TABLE workerfleet.schedule_runs (
    pool text NOT NULL,
    schedule text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    job_id bigint NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, schedule, scheduled_at)
);
