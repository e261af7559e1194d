"""The chaos soak (`make soak`): the whole product under faults, then an account of every job.

A WorkerPool of several workers and a Monitor with default settings drain a stream of
jobs whose handler records each execution in a side table, while a worker process is
SIGKILLed every few seconds, another is SIGSTOPped (hung), and the operator, PostgreSQL
and the API server are each restarted once. At the end it prints the jobs lost (not
succeeded), the jobs completed twice, the handler executions per job, the recovery time
from each kill to its jobs pending and running again, and the pool's status history.

- `__main__`: `python -m localcluster.soak [--short]`, exit 1 when a job was lost or
  completed twice
- `plan`: the parameters and the chaos schedule (pure)
- `report`: the figures from what the database recorded (pure)
- `run`: the soak itself on the local cluster
- `tasks/soak_tasks.py`: the task the worker pods run (`record`)
- `queries`: the named blocks of `soak.sql`
- `soak.sql`: the side tables, the trigger that records every job leaving `running`, and
  the report's queries
"""
