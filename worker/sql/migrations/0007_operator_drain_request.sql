-- 0007: a drain the operator asked for, told apart from a worker's own shutdown.
-- Before a scale-in the operator moves idle workers to 'draining' and stamps
-- drain_requested_at; the worker sees the state at its next heartbeat (or at
-- once through a NOTIFY on workerfleet_workers), stops claiming and turns
-- unready. The stamp lets the operator give back exactly the workers it asked
-- (state 'online' again) when it no longer needs them gone; a worker draining
-- because it received SIGTERM clears it (set_worker_state) and is never undone.
-- Claims lock the worker's row FOR SHARE and claim nothing once it is
-- 'draining', so a drain that committed leaves no claim in flight.
ALTER TABLE workerfleet.workers ADD COLUMN drain_requested_at timestamptz;
