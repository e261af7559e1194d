-- 0009 schedules: periodic jobs, each run enqueued once.
-- A schedule is declared by the operator (a WorkerPool's spec.schedules) or by a
-- worker's handlers module (@task(schedule=...)) and registered here, so the CLI
-- lists every schedule of a database whoever runs it. A run is keyed by (pool,
-- schedule, scheduled time): schedule_runs' primary key refuses a second job for
-- the same run, and the schedule's high-water mark (the latest run enqueued or
-- skipped) only moves forward, so a restart, a second scheduler or a clock stepped
-- back never enqueues a run twice.

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

CREATE TABLE workerfleet.schedule_runs (
    pool text NOT NULL,
    schedule text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    job_id bigint NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, schedule, scheduled_at)
);
