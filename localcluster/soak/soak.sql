-- The soak's own tables and queries (a development tool: the product's SQL is in
-- worker/sql/queries.sql). Blocks as there: `-- name --`, a description, the SQL.

-- install --
-- The side tables and the trigger that records every job leaving running; no parameters.
CREATE SCHEMA IF NOT EXISTS soak;
CREATE TABLE soak.executions (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX executions_job_idx ON soak.executions (job_id, started_at);
CREATE TABLE soak.transitions (
    job_id bigint NOT NULL,
    worker_id text,
    attempt integer,
    to_state text NOT NULL,
    why text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX transitions_worker_idx ON soak.transitions (worker_id);
CREATE FUNCTION soak.record_transition() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO soak.transitions (job_id, worker_id, attempt, to_state, why)
    VALUES (OLD.id, OLD.worker_id, OLD.attempt, NEW.state, NEW.last_error);
    RETURN NULL;
END;
$$;
CREATE TRIGGER soak_left_running AFTER UPDATE ON workerfleet.jobs
    FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state <> 'running')
    EXECUTE FUNCTION soak.record_transition();

-- record_execution --
-- The handler ran: $1 job id, $2 attempt, $3 worker id.
INSERT INTO soak.executions (job_id, attempt, worker_id) VALUES ($1, $2, $3);

-- job_states --
-- Jobs of the queue by state: $1 queue.
SELECT state, count(*) AS jobs FROM workerfleet.jobs WHERE queue = $1 GROUP BY state;

-- unfinished --
-- Jobs of the queue still pending or running: $1 queue.
SELECT count(*) FROM workerfleet.jobs WHERE queue = $1 AND state IN ('pending', 'running');

-- completed_twice --
-- Jobs that moved from running to succeeded more than once; no parameters.
SELECT count(*) FROM (
    SELECT job_id FROM soak.transitions WHERE to_state = 'succeeded'
    GROUP BY job_id HAVING count(*) > 1
) AS twice;

-- executions_per_job --
-- How many jobs of the queue the handler ran n times, per n: $1 queue.
SELECT runs, count(*) AS jobs FROM (
    SELECT j.id, count(e.job_id) AS runs
    FROM workerfleet.jobs AS j
    LEFT JOIN soak.executions AS e ON e.job_id = j.id
    WHERE j.queue = $1
    GROUP BY j.id
) AS per_job
GROUP BY runs ORDER BY runs;

-- worker_rows --
-- Every worker incarnation: id, pod, started_at (epoch seconds); no parameters.
SELECT id, pod, extract(epoch FROM started_at)::float8 AS started_at FROM workerfleet.workers;

-- taken_back --
-- Jobs taken from the given workers back to pending or dead, with when they ran next: $1 worker ids (text[]); epoch seconds.
SELECT t.job_id, t.worker_id, extract(epoch FROM t.at)::float8 AS at, coalesce(t.why, '') AS why,
    (SELECT extract(epoch FROM min(e.started_at))::float8 FROM soak.executions AS e
     WHERE e.job_id = t.job_id AND e.started_at > t.at) AS ran_again
FROM soak.transitions AS t
WHERE t.worker_id = ANY($1::text[]) AND t.to_state IN ('pending', 'dead')
ORDER BY t.at;

-- busy_pods --
-- The pods whose worker holds running jobs now; no parameters.
SELECT DISTINCT w.pod
FROM workerfleet.jobs AS j
JOIN workerfleet.workers AS w ON w.id = j.worker_id
WHERE j.state = 'running' AND w.pod IS NOT NULL;
