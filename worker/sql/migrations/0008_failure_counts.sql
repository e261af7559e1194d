-- 0008 failure counts: failed attempts and dead-lettered jobs per queue and minute,
-- for the Monitor's failedJobs and deadJobs rules. The statements that fail, bury,
-- rescue and reap jobs add to them (not a trigger: claims and completions, the hot
-- path, pay nothing); queue_stats reads the last hour of them. Each backend writes
-- its own slot (its pid), as job_counts does since 0006, so no two backends ever
-- lock one row: a recovery pass holding a slot row while it waits for a job row
-- could otherwise deadlock with a worker failing that job. A Monitor deletes rows
-- older than the hour.
CREATE TABLE workerfleet.job_failures (
    queue text NOT NULL,
    minute timestamptz NOT NULL,
    slot integer NOT NULL,
    failed bigint NOT NULL,
    dead bigint NOT NULL,
    PRIMARY KEY (queue, minute, slot)
);
