-- 0010 trace context: the enqueuer's OpenTelemetry context, kept with the job (not in
-- its payload) so the worker runs the job inside the same trace (worker/tracing.py).
-- enqueue() takes it as a new last argument; a caller passing the seven arguments
-- of before still resolves to it (the new one defaults to NULL), so the old function
-- goes rather than stay beside it as an ambiguous overload.
ALTER TABLE workerfleet.jobs ADD COLUMN trace_context jsonb;

DROP FUNCTION workerfleet.enqueue(text, text, jsonb, integer, timestamptz, integer, text);

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
