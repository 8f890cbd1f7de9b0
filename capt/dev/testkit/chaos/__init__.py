"""The chaos suite: worker kill -9 at precise points, Temporal server kill -9, AWS faults — each
scenario a small cluster's lifecycle on the local stack, every phase ending with the account audit.

    python -m capt.dev.testkit.chaos [--seed N] [--scenario ID ...] [--list] [--report PATH]
    make chaos

One local stack (Temporal dev server on SQLite, moto, the workload simulator, a worker) on free
ports in a temporary state dir, shared by the scenarios, which run one after another. A scenario
is a cluster's lifecycle (create → [scale | upgrade] → delete); some phases carry a chaos point:

- `kill=<activity>:<before|after>:<nth>`: the phase's worker runs with CAPT_CHAOS_KILL
  (capt/activities/kill_points.py) and kills itself -9 right before its nth execution of the activity
  starts, or right after it returned (side effect done, result never reported);
- a history trigger: the runner watches a workflow's history and, at the nth event of a type
  after the phase began, kills -9 the worker (a workflow-task boundary) or the Temporal dev
  server (restarted on its SQLite file);
- a scenario-wide worker environment, e.g. CAPT_AWS_FAULTS (capt/activities/aws/faults.py).

When the worker dies the runner starts a new one (the devstack starts what is missing) without
the kill point. The dead worker's started activity attempts would be retried once their
start-to-close timeout (90 s for AWS calls) expires; the runner fails them at once by activity
id instead — the same retryable failure, sooner (`--wait-timeouts` waits them out) — and resets
the workflows' sticky queues (what a worker does on a graceful shutdown).

A phase passes when: its chaos point fired as planned; the cluster converged within the phase's
timeout (Ready with the desired machines Running at the desired version, every simulated node
Ready at that kubelet version, one healthy etcd member per control-plane machine; or, for a
delete, the cluster workflow completed Deleted); and the account audit (capt/activities/aws/audit.py)
finds 0 duplicates, 0 orphans and nothing missing (after a delete: exactly the baseline taken
before the create). One row per chaos phase (and per failed plain phase) goes to the table, which
is printed and written to the report; the exit status is non-zero if any row failed, and the seed
is printed with the command that re-runs the failed scenarios.

The seed drives the AWS fault injector's RNG and the cluster names; kill points are fixed per
scenario, so a kill scenario is reproduced by its id alone.
"""
