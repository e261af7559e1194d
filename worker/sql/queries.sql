-- Every statement the queue runs, one named block each. A block starts with
-- `-- name --`, then a one-line description listing the parameters in order,
-- then the SQL. workerfleet.worker.queries splits this file once at import.

-- migrations_bootstrap --
-- Create the schema and the version table if missing; no parameters.
CREATE SCHEMA IF NOT EXISTS workerfleet;
CREATE TABLE IF NOT EXISTS workerfleet.schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- migrations_lock --
-- Hold the migration lock until the transaction ends: $1 lock key (bigint).
SELECT pg_advisory_xact_lock($1::bigint);

-- migrations_applied --
-- The versions already applied; no parameters.
SELECT version FROM workerfleet.schema_migrations ORDER BY version;

-- migrations_record --
-- Record one applied version: $1 version.
INSERT INTO workerfleet.schema_migrations (version) VALUES ($1);

-- enqueue_many --
-- A batch in order, parallel arrays: $1 queues, $2 tasks, $3 payloads (JSON text: a list payload would read as an array dimension), $4 priorities, $5 run_ats, $6 max_attempts (NULL: the claiming worker's), $7 unique_keys, $8 delays_seconds, $9 trace contexts (JSON text); returns one id per element, in order. The keys are locked first, in one order, so batches sharing keys never deadlock.
-- Every key's lock is taken first, in one global order (of its hash): a key
-- being inserted by another open transaction makes the insert wait for it, so
-- two batches holding the same new keys in different orders would each wait on
-- the other (a deadlock) if they took them in their own order.
WITH keys_locked AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(k.lock_key)) AS keys
    FROM (
        SELECT DISTINCT hashtextextended(
            'workerfleet.unique_key/' || u.queue || '/' || u.unique_key, 0
        ) AS lock_key
        FROM unnest($1::text[], $7::text[]) AS u(queue, unique_key)
        WHERE u.queue IS NOT NULL AND u.unique_key IS NOT NULL
        ORDER BY 1
    ) AS k
)
SELECT workerfleet.enqueue(
    r.queue, r.task, r.payload::jsonb, r.priority,
    coalesce(r.run_at, now() + make_interval(secs => r.delay_seconds)),
    r.max_attempts, r.unique_key, r.trace_context::jsonb
) AS id
FROM keys_locked, unnest(
    $1::text[], $2::text[], $3::text[], $4::integer[], $5::timestamptz[],
    $6::integer[], $7::text[], $8::float8[], $9::text[]
) WITH ORDINALITY AS r(
    queue, task, payload, priority, run_at, max_attempts, unique_key, delay_seconds,
    trace_context, ord
)
ORDER BY r.ord;

-- enqueue_many_plain --
-- A batch without unique keys as one INSERT (no per-row function call), parallel arrays: $1 queues, $2 tasks, $3 payloads (JSON text), $4 priorities, $5 run_ats, $6 max_attempts (NULL: the claiming worker's), $7 delays_seconds, $8 trace contexts (JSON text); returns the ids, ascending = the order given.
WITH inserted AS (
    INSERT INTO workerfleet.jobs (
        queue, task, payload, priority, run_at, max_attempts, trace_context
    )
    SELECT r.queue, r.task, r.payload::jsonb, coalesce(r.priority, 0),
        coalesce(r.run_at, now() + make_interval(secs => r.delay_seconds), now()),
        r.max_attempts, r.trace_context::jsonb
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::integer[], $5::timestamptz[],
        $6::integer[], $7::float8[], $8::text[]
    ) WITH ORDINALITY AS r(
        queue, task, payload, priority, run_at, max_attempts, delay_seconds, trace_context, ord
    )
    ORDER BY r.ord
    RETURNING id, queue, run_at
), woken AS (
    SELECT pg_notify('workerfleet_jobs', q.queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) AS q
)
SELECT i.id, (SELECT count(*) FROM woken) AS notified FROM inserted AS i ORDER BY i.id;

-- enqueue_one --
-- One job without a unique key as a plain INSERT (the common case, kept to one cheap statement): $1 queue, $2 task, $3 payload (JSON text), $4 priority, $5 run_at, $6 max_attempts (NULL: the claiming worker's), $7 delay_seconds, $8 trace context (JSON text); returns id.
WITH inserted AS (
    INSERT INTO workerfleet.jobs (
        queue, task, payload, priority, run_at, max_attempts, trace_context
    )
    VALUES (
        $1, $2, $3::text::jsonb, coalesce($4::integer, 0),
        coalesce($5::timestamptz, now() + make_interval(secs => $7::float8), now()),
        $6::integer, $8::text::jsonb
    )
    RETURNING id, queue, run_at
)
SELECT i.id, CASE WHEN i.run_at <= now() THEN pg_notify('workerfleet_jobs', i.queue) END
    AS notified
FROM inserted AS i;

-- claim_one_queue --
-- As claim, for a worker of a single queue (no per-queue fan-out to merge): $1 worker_id, $2 queue, $3 limit, $4 lease_seconds, $5 max_attempts for jobs that have none; returns the claimed rows (none while the worker is draining).
WITH claimer AS MATERIALIZED (
    -- Shared lock on the claiming worker's row: an operator's drain_workers waits for this
    -- claim to commit, and a claim that starts after a drain committed claims nothing.
    SELECT w.state FROM workerfleet.workers AS w WHERE w.id = $1 FOR SHARE
), candidates AS (
    SELECT j.id
    FROM workerfleet.jobs AS j
    WHERE j.state = 'pending' AND j.queue = $2 AND j.run_at <= now()
        AND NOT EXISTS (SELECT 1 FROM claimer WHERE claimer.state = 'draining')
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE workerfleet.jobs AS j
SET state = 'running',
    attempt = j.attempt + 1,
    worker_id = $1,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => $4::float8),
    max_attempts = coalesce(j.max_attempts, $5::integer)
FROM candidates
WHERE j.id = candidates.id
RETURNING j.*;

-- claim --
-- Lease up to $3 claimable jobs, highest priority first, giving the worker's max attempts to jobs enqueued without: $1 worker_id, $2 queues (text[]), $3 limit, $4 lease_seconds, $5 max_attempts for jobs that have none; returns the claimed rows (none while the worker is draining, see claim_one_queue).
WITH claimer AS MATERIALIZED (
    SELECT w.state FROM workerfleet.workers AS w WHERE w.id = $1 FOR SHARE
), candidates AS (
    SELECT c.id
    FROM unnest($2::text[]) AS q(queue)
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at
        FROM workerfleet.jobs AS j
        WHERE j.state = 'pending' AND j.queue = q.queue AND j.run_at <= now()
            AND NOT EXISTS (SELECT 1 FROM claimer WHERE claimer.state = 'draining')
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT $3
)
UPDATE workerfleet.jobs AS j
SET state = 'running',
    attempt = j.attempt + 1,
    worker_id = $1,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => $4::float8),
    max_attempts = coalesce(j.max_attempts, $5::integer)
FROM candidates
WHERE j.id = candidates.id
RETURNING j.*;

-- heartbeat --
-- Refresh the worker row, then extend the leases it still holds: $1 worker_id, $2 job ids (bigint[]), $3 attempts (int[]), $4 lease_seconds, $5 current_jobs, $6 jobs_succeeded, $7 jobs_failed; returns one row: held (the ids still held) and worker_state (the row's state, 'draining' when the operator asked for a drain; NULL when the row is gone).
-- Lock order, the same in every statement that writes several rows: the worker
-- row, then job rows by ascending id, then the counter rows (the triggers).
WITH worker AS (
    UPDATE workerfleet.workers
    SET heartbeat_at = now(),
        current_jobs = $5,
        jobs_succeeded = $6,
        jobs_failed = $7,
        -- A heartbeat proves a worker judged dead is alive after all.
        state = CASE WHEN state = 'dead' THEN 'online' ELSE state END
    WHERE id = $1
    RETURNING id, state
), held AS (
    SELECT j.id
    FROM workerfleet.jobs AS j
    JOIN unnest($2::bigint[], $3::integer[]) AS mine(id, attempt)
        ON j.id = mine.id AND j.attempt = mine.attempt
    WHERE j.worker_id = $1 AND j.state = 'running'
        -- Always true, and evaluated once before any job row is read: the worker
        -- row is locked first, as reap_dead_workers locks it.
        AND (SELECT count(*) FROM worker) >= 0
    ORDER BY j.id
    FOR UPDATE OF j
), extended AS (
    UPDATE workerfleet.jobs AS j
    SET lease_expires_at = now() + make_interval(secs => $4::float8)
    FROM held
    WHERE j.id = held.id
    RETURNING j.id
)
SELECT coalesce((SELECT array_agg(e.id) FROM extended AS e), '{}') AS held,
    (SELECT w.state FROM worker AS w) AS worker_state;

-- complete_many --
-- Record success for each job the caller still holds, in one statement; parallel arrays: $1 ids, $2 worker_ids, $3 attempts, $4 results (JSON text); returns (id, worker_id, attempt) of the jobs recorded, the others were fenced.
-- The rows are locked by ascending id, as the heartbeat locks them: two
-- statements taking the same jobs in different orders deadlock.
WITH mine AS (
    SELECT j.id, done.result
    FROM workerfleet.jobs AS j
    JOIN unnest($1::bigint[], $2::text[], $3::integer[], $4::text[])
        AS done(id, worker_id, attempt, result)
        ON j.id = done.id AND j.worker_id = done.worker_id AND j.attempt = done.attempt
    WHERE j.state = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE workerfleet.jobs AS j
SET state = 'succeeded', finished_at = now(), result = mine.result::jsonb,
    lease_expires_at = NULL
FROM mine
WHERE j.id = mine.id
RETURNING j.id, j.worker_id, j.attempt;

-- fail --
-- Record a failure if the caller still holds the job, and count it in job_failures: $1 id, $2 worker_id, $3 attempt, $4 error, $5 traceback, $6 retry_delay_seconds; returns the new state (pending or dead), or no row when fenced.
WITH failed AS (
    UPDATE workerfleet.jobs
    SET state = CASE WHEN attempt < max_attempts THEN 'pending' ELSE 'dead' END,
        run_at = CASE WHEN attempt < max_attempts
            THEN now() + make_interval(secs => $6::float8) ELSE run_at END,
        finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE now() END,
        lease_expires_at = NULL,
        last_error = $4,
        last_traceback = $5
    WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
    RETURNING state, queue, run_at
), counted AS (
    INSERT INTO workerfleet.job_failures AS f (queue, minute, slot, failed, dead)
    SELECT queue, date_trunc('minute', now()), pg_backend_pid(),
        count(*), count(*) FILTER (WHERE state = 'dead')
    FROM failed
    GROUP BY queue
    ORDER BY queue
    ON CONFLICT (queue, minute, slot)
        DO UPDATE SET failed = f.failed + excluded.failed, dead = f.dead + excluded.dead
), woken AS (
    SELECT pg_notify('workerfleet_jobs', queue) FROM failed
    WHERE state = 'pending' AND run_at <= now()
)
SELECT state, (SELECT count(*) FROM woken) AS notified FROM failed;

-- bury --
-- Dead-letter a held job at once, whatever attempts remain (a permanent error such as an unknown task), counted in job_failures: $1 id, $2 worker_id, $3 attempt, $4 error, $5 traceback; returns the id, or no row when fenced.
WITH buried AS (
    UPDATE workerfleet.jobs
    SET state = 'dead', finished_at = now(), lease_expires_at = NULL,
        last_error = $4, last_traceback = $5
    WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
    RETURNING id, queue, state
), counted AS (
    INSERT INTO workerfleet.job_failures AS f (queue, minute, slot, failed, dead)
    SELECT queue, date_trunc('minute', now()), pg_backend_pid(),
        count(*), count(*) FILTER (WHERE state = 'dead')
    FROM buried
    GROUP BY queue
    ORDER BY queue
    ON CONFLICT (queue, minute, slot)
        DO UPDATE SET failed = f.failed + excluded.failed, dead = f.dead + excluded.dead
)
SELECT id FROM buried;

-- release --
-- Give a held job back without counting the attempt (shutdown): $1 id, $2 worker_id, $3 attempt; returns the id, or no row when fenced.
WITH released AS (
    UPDATE workerfleet.jobs
    SET state = 'pending', attempt = attempt - 1, lease_expires_at = NULL
    WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
    RETURNING id, queue
), woken AS (
    SELECT pg_notify('workerfleet_jobs', queue) FROM released
)
SELECT id, (SELECT count(*) FROM woken) AS notified FROM released;

-- register_worker --
-- Insert or revive a worker row, online with a fresh heartbeat: $1 id, $2 pool, $3 queues (text[]), $4 pod, $5 version.
INSERT INTO workerfleet.workers (id, pool, queues, pod, version, state, started_at, heartbeat_at)
VALUES ($1, $2, $3::text[], $4, $5, 'online', now(), now())
ON CONFLICT (id) DO UPDATE
SET pool = excluded.pool, queues = excluded.queues, pod = excluded.pod,
    version = excluded.version, state = 'online', heartbeat_at = now();

-- set_worker_state --
-- Move a worker to a state, by the worker itself: $1 id, $2 state (online, draining, offline, dead). A drain it starts on its own (SIGTERM) is not the operator's to undo, so any drain request is cleared.
UPDATE workerfleet.workers
SET state = $2,
    heartbeat_at = now(),
    drain_requested_at = NULL,
    current_jobs = CASE WHEN $2 IN ('offline', 'dead') THEN 0 ELSE current_jobs END
WHERE id = $1;

-- rescue_expired_leases --
-- Running jobs whose lease expired more than $4 seconds ago go back to pending, the lost run counting as an attempt (and as a failure in job_failures), or to dead when out of attempts, only in queues $3 (NULL: every queue); a first rescue keeps the job's run_at (its place in line), a later one waits $1 x 2^(rescues - 1) seconds, at most $2: $1 backoff_seconds, $2 backoff_cap_seconds, $3 queues (text[] or NULL), $4 grace_seconds; returns rescued and dead counts.
WITH expired AS (
    SELECT id FROM workerfleet.jobs
    WHERE state = 'running'
        AND lease_expires_at < now() - make_interval(secs => $4::float8)
        AND ($3::text[] IS NULL OR queue = ANY($3::text[]))
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE workerfleet.jobs AS j
    SET state = CASE WHEN j.attempt < j.max_attempts THEN 'pending' ELSE 'dead' END,
        run_at = CASE WHEN j.attempt < j.max_attempts
            THEN workerfleet.rescued_run_at(j.run_at, j.rescues, $1::float8, $2::float8)
            ELSE j.run_at END,
        finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE now() END,
        rescues = j.rescues + 1,
        last_error = format('lease expired on worker %s at %s (attempt %s of %s)',
            j.worker_id, j.lease_expires_at, j.attempt, j.max_attempts),
        last_traceback = NULL,
        lease_expires_at = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.state, j.queue, j.run_at
), counted AS (
    INSERT INTO workerfleet.job_failures AS f (queue, minute, slot, failed, dead)
    SELECT queue, date_trunc('minute', now()), pg_backend_pid(),
        count(*), count(*) FILTER (WHERE state = 'dead')
    FROM moved
    GROUP BY queue
    ORDER BY queue
    ON CONFLICT (queue, minute, slot)
        DO UPDATE SET failed = f.failed + excluded.failed, dead = f.dead + excluded.dead
), woken AS (
    SELECT pg_notify('workerfleet_jobs', q.queue)
    FROM (SELECT DISTINCT queue FROM moved WHERE state = 'pending' AND run_at <= now()) AS q
)
SELECT count(*) FILTER (WHERE state = 'pending') AS rescued,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       (SELECT count(*) FROM woken) AS notified
FROM moved;

-- housekeeping_try_lock --
-- Take the housekeeping lock until the transaction ends, if no other process holds it: $1 lock key (bigint); returns true if taken.
SELECT pg_try_advisory_xact_lock($1::bigint);

-- fold_job_counts --
-- Merge the counter rows of backends that have gone into slot 0; no parameters; returns the rows folded.
SELECT workerfleet.fold_job_counts();

-- recount_jobs --
-- Rebuild the depth counters from the jobs table; no parameters; returns queue, state, the true count and how far the counters were off.
SELECT queue, state, counted, drift FROM workerfleet.recount_jobs();

-- reap_dead_workers --
-- Mark online/draining workers of pools $4 (NULL: every pool) silent for $1 seconds dead and release their running jobs at once, the lost run counting as an attempt (and as a failure in job_failures), placed in line as rescue_expired_leases places them: $1 older_than_seconds, $2 backoff_seconds, $3 backoff_cap_seconds, $4 pools (text[] or NULL); returns worker ids, pods and job counts.
-- Worker rows first, then their jobs by ascending id: the heartbeat's order.
WITH dead_workers AS (
    UPDATE workerfleet.workers
    SET state = 'dead', current_jobs = 0
    WHERE state IN ('online', 'draining')
        AND heartbeat_at < now() - make_interval(secs => $1::float8)
        AND ($4::text[] IS NULL OR pool = ANY($4::text[]))
    RETURNING id, pod, heartbeat_at
), orphans AS (
    SELECT j.id, w.heartbeat_at
    FROM workerfleet.jobs AS j
    JOIN dead_workers AS w ON j.worker_id = w.id
    WHERE j.state = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
), released AS (
    UPDATE workerfleet.jobs AS j
    SET state = CASE WHEN j.attempt < j.max_attempts THEN 'pending' ELSE 'dead' END,
        run_at = CASE WHEN j.attempt < j.max_attempts
            THEN workerfleet.rescued_run_at(j.run_at, j.rescues, $2::float8, $3::float8)
            ELSE j.run_at END,
        finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE now() END,
        rescues = j.rescues + 1,
        last_error = format('worker %s stopped heartbeating (last heartbeat %s); '
            'job released (attempt %s of %s)',
            j.worker_id, o.heartbeat_at, j.attempt, j.max_attempts),
        last_traceback = NULL,
        lease_expires_at = NULL
    FROM orphans AS o
    WHERE j.id = o.id AND j.state = 'running'
    RETURNING j.state, j.queue, j.run_at
), counted AS (
    INSERT INTO workerfleet.job_failures AS f (queue, minute, slot, failed, dead)
    SELECT queue, date_trunc('minute', now()), pg_backend_pid(),
        count(*), count(*) FILTER (WHERE state = 'dead')
    FROM released
    GROUP BY queue
    ORDER BY queue
    ON CONFLICT (queue, minute, slot)
        DO UPDATE SET failed = f.failed + excluded.failed, dead = f.dead + excluded.dead
), woken AS (
    SELECT pg_notify('workerfleet_jobs', q.queue)
    FROM (SELECT DISTINCT queue FROM released WHERE state = 'pending' AND run_at <= now()) AS q
)
SELECT (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM dead_workers) AS worker_ids,
       (SELECT coalesce(array_agg(pod ORDER BY pod) FILTER (WHERE pod IS NOT NULL), '{}')
        FROM dead_workers) AS pods,
       (SELECT count(*) FROM released WHERE state = 'pending') AS jobs_released,
       (SELECT count(*) FROM released WHERE state = 'dead') AS jobs_dead,
       (SELECT count(*) FROM woken) AS notified;

-- release_incarnations --
-- Mark worker incarnations known to be dead (their container ended or restarted, their pod is gone) dead and release their running jobs at once, the lost run counting as an attempt; only rows still online or draining, only jobs still running under that worker id (fenced): $1 worker ids (text[]), $2 why each died (text[], parallel to $1), $3 backoff_seconds, $4 backoff_cap_seconds (placed in line as rescue_expired_leases places them, counted in job_failures); returns worker ids and job counts.
-- Worker rows first (by id), then their jobs by ascending id: the heartbeat's order.
WITH died AS (
    SELECT w.id, d.why
    FROM workerfleet.workers AS w
    JOIN unnest($1::text[], $2::text[]) AS d(id, why) ON w.id = d.id
    WHERE w.state IN ('online', 'draining')
    ORDER BY w.id
    FOR UPDATE OF w
), dead_workers AS (
    UPDATE workerfleet.workers AS w
    SET state = 'dead', current_jobs = 0
    FROM died AS d
    WHERE w.id = d.id
    RETURNING w.id, d.why
), orphans AS (
    SELECT j.id, w.why
    FROM workerfleet.jobs AS j
    JOIN dead_workers AS w ON j.worker_id = w.id
    WHERE j.state = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
), released AS (
    UPDATE workerfleet.jobs AS j
    SET state = CASE WHEN j.attempt < j.max_attempts THEN 'pending' ELSE 'dead' END,
        run_at = CASE WHEN j.attempt < j.max_attempts
            THEN workerfleet.rescued_run_at(j.run_at, j.rescues, $3::float8, $4::float8)
            ELSE j.run_at END,
        rescues = j.rescues + 1,
        finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE now() END,
        last_error = format('worker %s died (%s); job released (attempt %s of %s)',
            j.worker_id, o.why, j.attempt, j.max_attempts),
        last_traceback = NULL,
        lease_expires_at = NULL
    FROM orphans AS o
    WHERE j.id = o.id AND j.state = 'running'
    RETURNING j.state, j.queue, j.run_at
), counted AS (
    INSERT INTO workerfleet.job_failures AS f (queue, minute, slot, failed, dead)
    SELECT queue, date_trunc('minute', now()), pg_backend_pid(),
        count(*), count(*) FILTER (WHERE state = 'dead')
    FROM released
    GROUP BY queue
    ORDER BY queue
    ON CONFLICT (queue, minute, slot)
        DO UPDATE SET failed = f.failed + excluded.failed, dead = f.dead + excluded.dead
), woken AS (
    SELECT pg_notify('workerfleet_jobs', q.queue)
    FROM (SELECT DISTINCT queue FROM released WHERE state = 'pending' AND run_at <= now()) AS q
)
SELECT (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM dead_workers) AS worker_ids,
       (SELECT count(*) FROM released WHERE state = 'pending') AS jobs_released,
       (SELECT count(*) FROM released WHERE state = 'dead') AS jobs_dead,
       (SELECT count(*) FROM woken) AS notified;

-- cancel --
-- Cancel a pending or running job (a running one's holder is fenced out): $1 id; returns the id, or no row when not cancellable.
UPDATE workerfleet.jobs
SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL
WHERE id = $1 AND state IN ('pending', 'running')
RETURNING id;

-- retry_dead --
-- Put a dead or cancelled job back to pending with its attempts (and rescues) reset, unless its unique key is live again: $1 id; returns the id, or no row.
WITH retried AS (
    UPDATE workerfleet.jobs AS j
    SET state = 'pending', attempt = 0, rescues = 0, run_at = now(), finished_at = NULL,
        lease_expires_at = NULL
    WHERE j.id = $1 AND j.state IN ('dead', 'cancelled')
        AND (j.unique_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM workerfleet.jobs AS live
            WHERE live.queue = j.queue AND live.unique_key = j.unique_key
                AND live.state IN ('pending', 'running')))
    RETURNING j.id, j.queue
), woken AS (
    SELECT pg_notify('workerfleet_jobs', queue) FROM retried
)
SELECT id, (SELECT count(*) FROM woken) AS notified FROM retried;

-- prune_finished --
-- Delete up to $3 finished jobs in states $2 (text[]) finished more than $1 seconds ago, only in queues $4 (NULL: every queue): $1 older_than_seconds, $2 states, $3 batch_limit, $4 queues (text[] or NULL); returns the count deleted.
WITH doomed AS (
    SELECT id FROM workerfleet.jobs
    WHERE state IN ('succeeded', 'dead', 'cancelled') AND state = ANY($2::text[])
        AND finished_at < now() - make_interval(secs => $1::float8)
        AND ($4::text[] IS NULL OR queue = ANY($4::text[]))
    ORDER BY finished_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM workerfleet.jobs AS j USING doomed WHERE j.id = doomed.id RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- prune_workers --
-- Delete offline and dead worker rows silent for more than $1 seconds: $1 older_than_seconds; returns the count deleted.
WITH deleted AS (
    DELETE FROM workerfleet.workers
    WHERE state IN ('offline', 'dead')
        AND heartbeat_at < now() - make_interval(secs => $1::float8)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- prune_failure_counts --
-- Delete failure counts older than $1 seconds (the stats read only the last hour): $1 older_than_seconds; returns the count deleted.
WITH deleted AS (
    DELETE FROM workerfleet.job_failures
    WHERE minute < now() - make_interval(secs => $1::float8)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- recovery_lock --
-- Hold the recovery lock until the transaction ends, so one recovery pass at a time runs per database (operator replicas, Monitors, the recover CLI): $1 lock key (bigint).
SELECT pg_advisory_xact_lock($1::bigint);

-- queue_stats --
-- Depth, throughput and the last hour's failures per queue, from the counters plus three index probes; no parameters. pending excludes scheduled (run_at in the future); oldest_pending_seconds is measured from run_at; failure_minutes_ago lists the minutes (0 = this one) with failures, failed_per_minute and dead_per_minute their counts.
WITH per_state AS (
    SELECT queue, state, sum(n)::bigint AS n
    FROM workerfleet.job_counts
    GROUP BY queue, state
), counts AS (
    SELECT queue,
        coalesce(sum(n) FILTER (WHERE state = 'pending'), 0)::bigint AS pending_all,
        coalesce(sum(n) FILTER (WHERE state = 'running'), 0)::bigint AS running,
        coalesce(sum(n) FILTER (WHERE state = 'succeeded'), 0)::bigint AS succeeded,
        coalesce(sum(n) FILTER (WHERE state = 'dead'), 0)::bigint AS dead,
        coalesce(sum(n) FILTER (WHERE state = 'cancelled'), 0)::bigint AS cancelled
    FROM per_state
    GROUP BY queue
    HAVING bool_or(n <> 0)
), failures AS (
    SELECT f.queue,
        (extract(epoch FROM date_trunc('minute', now()) - f.minute) / 60)::integer AS ago,
        sum(f.failed)::bigint AS failed,
        sum(f.dead)::bigint AS dead
    FROM workerfleet.job_failures AS f
    WHERE f.minute > date_trunc('minute', now()) - interval '60 minutes'
    GROUP BY f.queue, f.minute
), failure_series AS (
    SELECT queue,
        array_agg(ago ORDER BY ago) AS minutes_ago,
        array_agg(failed ORDER BY ago) AS failed,
        array_agg(dead ORDER BY ago) AS dead
    FROM failures
    GROUP BY queue
), finished AS (
    SELECT queue, count(*) AS n
    FROM workerfleet.jobs
    WHERE state IN ('succeeded', 'dead', 'cancelled')
        AND finished_at > now() - interval '1 minute'
    GROUP BY queue
)
SELECT c.queue,
    c.pending_all - s.scheduled AS pending,
    s.scheduled,
    c.running,
    c.succeeded,
    c.dead,
    c.cancelled,
    extract(epoch FROM now() - o.oldest_run_at)::float8 AS oldest_pending_seconds,
    coalesce(f.n, 0) AS finished_last_minute,
    coalesce(fs.minutes_ago, '{}') AS failure_minutes_ago,
    coalesce(fs.failed, '{}') AS failed_per_minute,
    coalesce(fs.dead, '{}') AS dead_per_minute
FROM counts AS c
CROSS JOIN LATERAL (
    SELECT count(*) AS scheduled FROM workerfleet.jobs AS j
    WHERE j.state = 'pending' AND j.queue = c.queue AND j.run_at > now()
        AND j.priority IS NOT NULL
) AS s
CROSS JOIN LATERAL (
    SELECT min(j.run_at) AS oldest_run_at FROM workerfleet.jobs AS j
    WHERE j.state = 'pending' AND j.queue = c.queue AND j.run_at <= now()
        AND j.priority IS NOT NULL
) AS o
LEFT JOIN finished AS f ON f.queue = c.queue
LEFT JOIN failure_series AS fs ON fs.queue = c.queue
ORDER BY c.queue;

-- worker_stats --
-- Worker counts per pool, and the running jobs its workers hold (whatever their state: a dead worker's unreleased jobs count); a worker silent for $1 seconds counts as dead; holding = online or draining workers with a job at their last heartbeat: $1 dead_after_seconds.
WITH w AS (
    SELECT pool, state, current_jobs,
        heartbeat_at >= now() - make_interval(secs => $1::float8) AS fresh
    FROM workerfleet.workers
    WHERE state <> 'offline'
), held AS (
    SELECT holder.pool, count(*) AS running_jobs
    FROM workerfleet.jobs AS j
    JOIN workerfleet.workers AS holder ON holder.id = j.worker_id
    WHERE j.state = 'running'
    GROUP BY holder.pool
), per_pool AS (
    SELECT pool,
        count(*) FILTER (WHERE state = 'online' AND fresh) AS online,
        count(*) FILTER (WHERE state = 'online' AND fresh AND current_jobs > 0) AS busy,
        count(*) FILTER (WHERE state = 'online' AND fresh AND current_jobs = 0) AS idle,
        count(*) FILTER (WHERE state = 'draining' AND fresh) AS draining,
        count(*) FILTER (WHERE state = 'dead' OR NOT fresh) AS dead,
        count(*) FILTER (WHERE state IN ('online', 'draining') AND fresh AND current_jobs > 0)
            AS holding
    FROM w
    GROUP BY pool
)
SELECT p.pool, p.online, p.busy, p.idle, p.draining, p.dead, p.holding,
    coalesce(h.running_jobs, 0) AS running_jobs
FROM per_pool AS p
LEFT JOIN held AS h ON h.pool = p.pool
ORDER BY p.pool;

-- get_job --
-- One job by id: $1 id.
SELECT * FROM workerfleet.jobs WHERE id = $1;

-- list_jobs --
-- Newest jobs first, each filter NULL for any: $1 queue, $2 state, $3 task, $4 limit.
SELECT * FROM workerfleet.jobs
WHERE ($1::text IS NULL OR queue = $1)
    AND ($2::text IS NULL OR state = $2)
    AND ($3::text IS NULL OR task = $3)
ORDER BY id DESC
LIMIT $4;

-- list_workers --
-- Worker rows, optionally of one pool: $1 pool or NULL.
SELECT * FROM workerfleet.workers
WHERE ($1::text IS NULL OR pool = $1)
ORDER BY pool, started_at, id;

-- enqueue_on_connection --
-- As enqueue, for a caller's own connection (its transaction) whose JSON codec is unknown: $1 queue, $2 task, $3 payload as JSON text, $4 priority, $5 run_at, $6 max_attempts (NULL: the claiming worker's), $7 unique_key, $8 delay_seconds, $9 trace context as JSON text; returns id.
SELECT workerfleet.enqueue(
    $1::text, $2::text, $3::text::jsonb, $4::integer,
    coalesce($5::timestamptz, now() + make_interval(secs => $8::float8)),
    $6::integer, $7::text, $9::text::jsonb
) AS id;

-- pool_workers --
-- The live workers of one pool, for choosing scale-in victims: $1 pool, $2 dead_after_seconds; rows online or draining with a heartbeat fresher than $2, newest first.
SELECT id, pod, state, current_jobs, drain_requested_at IS NOT NULL AS drain_requested
FROM workerfleet.workers
WHERE pool = $1 AND state IN ('online', 'draining')
    AND heartbeat_at >= now() - make_interval(secs => $2::float8)
ORDER BY started_at DESC, id;

-- drain_workers --
-- The operator asks workers to drain before a scale-in: $1 worker ids (text[]); online ones (and ones already draining at its request) become draining with drain_requested_at set and are notified on workerfleet_workers; returns the ids marked. Waits for their claims in flight (claim locks the row), so once this commits they claim nothing more.
WITH marked AS (
    UPDATE workerfleet.workers
    SET state = 'draining', drain_requested_at = coalesce(drain_requested_at, now())
    WHERE id = ANY($1::text[])
        AND (state = 'online' OR (state = 'draining' AND drain_requested_at IS NOT NULL))
    RETURNING id
), woken AS (
    SELECT pg_notify('workerfleet_workers', m.id) FROM marked AS m
)
SELECT m.id, (SELECT count(*) FROM woken) AS notified FROM marked AS m ORDER BY m.id;

-- undrain_workers --
-- The operator no longer needs these workers gone: $1 worker ids (text[]); the ones still draining at its request go back online and are notified on workerfleet_workers; returns their ids.
WITH restored AS (
    UPDATE workerfleet.workers
    SET state = 'online', drain_requested_at = NULL
    WHERE id = ANY($1::text[]) AND state = 'draining' AND drain_requested_at IS NOT NULL
    RETURNING id
), woken AS (
    SELECT pg_notify('workerfleet_workers', r.id) FROM restored AS r
)
SELECT r.id, (SELECT count(*) FROM woken) AS notified FROM restored AS r ORDER BY r.id;

-- running_jobs_of_workers --
-- Running jobs held by each of $1 worker ids (text[]), as every committed claim left them; returns worker_id and jobs for the workers holding any.
SELECT worker_id, count(*) AS jobs
FROM workerfleet.jobs
WHERE state = 'running' AND worker_id = ANY($1::text[])
GROUP BY worker_id
ORDER BY worker_id;
-- schedules_register --
-- Make the pool's schedules of one source exactly these (insert, update what changed, delete the others; a name held by the other source is left alone), parallel arrays: $1 pool, $2 source, $3 names, $4 queues, $5 tasks, $6 crons, $7 time_zones, $8 payloads (JSON text), $9 priorities, $10 max_attempts, $11 starting_deadline_seconds, $12 suspended, $13 next_run_ats, $14 now (the registration time: since of a new schedule, or of one whose times changed or that resumed); returns per name whether it was written and the source that held it before.
WITH given AS (
    SELECT *
    FROM unnest(
        $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::integer[],
        $10::integer[], $11::float8[], $12::boolean[], $13::timestamptz[]
    ) AS g(name, queue, task, cron, time_zone, payload, priority, max_attempts,
        starting_deadline_seconds, suspended, next_run_at)
), removed AS (
    DELETE FROM workerfleet.schedules AS s
    WHERE s.pool = $1 AND s.source = $2 AND NOT (s.name = ANY ($3::text[]))
    RETURNING s.name
), written AS (
    INSERT INTO workerfleet.schedules AS s (
        pool, name, source, queue, task, cron, time_zone, payload, priority, max_attempts,
        starting_deadline_seconds, suspended, since, last_scheduled_at, next_run_at
    )
    SELECT $1, g.name, $2, g.queue, g.task, g.cron, g.time_zone, g.payload::jsonb, g.priority,
        g.max_attempts, g.starting_deadline_seconds, g.suspended, $14::timestamptz,
        -- A schedule removed and declared again keeps its runs' marks.
        (SELECT max(r.scheduled_at) FROM workerfleet.schedule_runs AS r
         WHERE r.pool = $1 AND r.schedule = g.name),
        g.next_run_at
    FROM given AS g
    ORDER BY g.name
    ON CONFLICT (pool, name) DO UPDATE
    SET queue = excluded.queue, task = excluded.task, cron = excluded.cron,
        time_zone = excluded.time_zone, payload = excluded.payload,
        priority = excluded.priority, max_attempts = excluded.max_attempts,
        starting_deadline_seconds = excluded.starting_deadline_seconds,
        suspended = excluded.suspended,
        since = CASE
            WHEN (s.cron, s.time_zone) IS DISTINCT FROM (excluded.cron, excluded.time_zone)
                OR (s.suspended AND NOT excluded.suspended)
            THEN excluded.since ELSE s.since END,
        next_run_at = excluded.next_run_at,
        updated_at = now()
    WHERE s.source = excluded.source
        AND (s.queue, s.task, s.cron, s.time_zone, s.payload, s.priority, s.max_attempts,
            s.starting_deadline_seconds, s.suspended)
        IS DISTINCT FROM (excluded.queue, excluded.task, excluded.cron, excluded.time_zone,
            excluded.payload, excluded.priority, excluded.max_attempts,
            excluded.starting_deadline_seconds, excluded.suspended)
    RETURNING s.name
)
SELECT g.name, w.name IS NOT NULL AS written, before.source AS held_by,
    (SELECT count(*) FROM removed) AS removed
FROM given AS g
LEFT JOIN written AS w ON w.name = g.name
LEFT JOIN workerfleet.schedules AS before ON before.pool = $1 AND before.name = g.name
ORDER BY g.name;

-- schedules_list --
-- Schedules with the state of their last run's job, of one pool or all: $1 pool or NULL.
SELECT s.*, j.state AS last_job_state
FROM workerfleet.schedules AS s
LEFT JOIN workerfleet.jobs AS j ON j.id = s.last_job_id
WHERE ($1::text IS NULL OR s.pool = $1)
ORDER BY s.pool, s.name;

-- schedule_advance --
-- Move a schedule past its due runs, once: enqueue the run at $4 (unless NULL) and count $5 skipped runs (the latest at $6), only if they are later than every run enqueued or skipped before and the schedule is not suspended; the run's job and its unique key (pool, schedule, scheduled time) are written in the same statement. $1 pool, $2 name, $3 source, $4 scheduled time to enqueue or NULL, $5 missed count, $6 latest missed time or NULL, $7 next run time, $8 seconds of run history kept; returns whether it advanced and the job id.
WITH advanced AS (
    UPDATE workerfleet.schedules AS s
    SET last_scheduled_at = coalesce($4::timestamptz, s.last_scheduled_at),
        last_job_id = CASE WHEN $4::timestamptz IS NULL THEN s.last_job_id
            ELSE nextval(pg_get_serial_sequence('workerfleet.jobs', 'id')) END,
        missed_runs = s.missed_runs + $5::bigint,
        last_missed_at = coalesce($6::timestamptz, s.last_missed_at),
        next_run_at = $7::timestamptz,
        updated_at = now()
    WHERE s.pool = $1 AND s.name = $2 AND s.source = $3 AND NOT s.suspended
        AND greatest($4::timestamptz, $6::timestamptz)
            > coalesce(greatest(s.last_scheduled_at, s.last_missed_at), '-infinity')
    RETURNING s.pool, s.name, s.queue, s.task, s.payload, s.priority, s.max_attempts,
        s.last_job_id
), run AS (
    INSERT INTO workerfleet.schedule_runs (pool, schedule, scheduled_at, job_id)
    SELECT a.pool, a.name, $4::timestamptz, a.last_job_id
    FROM advanced AS a
    WHERE $4::timestamptz IS NOT NULL
    ON CONFLICT (pool, schedule, scheduled_at) DO NOTHING
    RETURNING job_id
), job AS (
    INSERT INTO workerfleet.jobs (id, queue, task, payload, priority, max_attempts)
    SELECT r.job_id, a.queue, a.task, a.payload, a.priority, a.max_attempts
    FROM run AS r CROSS JOIN advanced AS a
    RETURNING id, queue
), woken AS (
    SELECT pg_notify('workerfleet_jobs', queue) FROM job
), pruned AS (
    DELETE FROM workerfleet.schedule_runs AS r
    USING advanced AS a
    WHERE r.pool = a.pool AND r.schedule = a.name
        AND r.scheduled_at < $4::timestamptz - make_interval(secs => $8::float8)
)
SELECT (SELECT count(*) FROM advanced) > 0 AS advanced,
    (SELECT id FROM job) AS job_id,
    (SELECT count(*) FROM woken) AS notified;

-- schedule_runs --
-- The runs enqueued for a schedule, newest first: $1 pool, $2 schedule, $3 limit.
SELECT r.*, j.state AS job_state, j.created_at AS job_created_at
FROM workerfleet.schedule_runs AS r
LEFT JOIN workerfleet.jobs AS j ON j.id = r.job_id
WHERE r.pool = $1 AND r.schedule = $2
ORDER BY r.scheduled_at DESC
LIMIT $3;

-- schedule_lock_try --
-- Take the session-level lock that makes one worker of a pool its scheduler, without waiting: $1 pool; returns locked.
SELECT pg_try_advisory_lock(hashtextextended('workerfleet.schedules/' || $1, 0)) AS locked;

-- schedule_lock_release --
-- Give the scheduler lock back: $1 pool; returns whether it was held.
SELECT pg_advisory_unlock(hashtextextended('workerfleet.schedules/' || $1, 0)) AS released;

-- ping --
-- Whether the connection still answers (a session-level lock holder checks its session); no parameters.
SELECT true AS alive;
