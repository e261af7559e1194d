-- 0003: keep the claim on the claimable index.
-- With stale statistics (a backlog enqueued since the last ANALYZE) the
-- planner took the (queue, run_at) index for the claim, then sorted the whole
-- backlog by priority on every claim. The extra predicate term, always true
-- (priority is NOT NULL), is one the claim never states, so only the stats
-- query (which states it) can use this index.
DROP INDEX workerfleet.jobs_pending_run_at_idx;
CREATE INDEX jobs_pending_run_at_idx ON workerfleet.jobs (queue, run_at)
    WHERE state = 'pending' AND priority IS NOT NULL;
