-- 0004: max_attempts from the worker that claims the job.
-- A job enqueued without max_attempts stores NULL, and the first worker to
-- claim it gives it its own WORKERFLEET_MAX_ATTEMPTS (a WorkerPool's
-- spec.worker.maxAttempts), which stays with the job: the pool's setting decides
-- for the jobs that did not say, and fail, rescue and reap always see a value
-- once a job runs. Jobs that exist already keep theirs. A worker of an older
-- version cannot claim a job that has none (the new CHECK refuses it) until it
-- is upgraded too; it never dead-letters such a job by mistake.
ALTER TABLE workerfleet.jobs
    ALTER COLUMN max_attempts DROP NOT NULL,
    ALTER COLUMN max_attempts DROP DEFAULT,
    ADD CONSTRAINT jobs_running_has_max_attempts
        CHECK (state <> 'running' OR max_attempts IS NOT NULL);

-- Any language can enqueue: SELECT workerfleet.enqueue('emails', 'send', '{"to": "a@b"}');
-- NULL for an optional argument means its default; a NULL max_attempts is filled in
-- by the worker that first claims the job (its WORKERFLEET_MAX_ATTEMPTS). Returns the
-- job id; with a unique_key that is already pending or running, the id of that job instead.
CREATE OR REPLACE FUNCTION workerfleet.enqueue(
    queue text,
    task text,
    payload jsonb DEFAULT NULL,
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    unique_key text DEFAULT NULL
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
            (queue, task, payload, priority, run_at, max_attempts, unique_key)
        VALUES (
            enqueue.queue, enqueue.task, enqueue.payload, coalesce(enqueue.priority, 0),
            effective_run_at, enqueue.max_attempts, enqueue.unique_key
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
