"""Record the workflow histories that tests/workflows/test_replay.py replays (`make histories`).

    .venv/bin/python -m capt.dev.testkit.histories [--out tests/histories] [--keep-stack]

Starts its own local stack (`capt dev up` in a fresh state dir, on free ports; its worker is
versioned, as the stack's always is), then drives one small cluster through every path worth
replaying as a user would: `capt apply`, `capt scale`, `capt upgrade`, `capt delete cluster`,
an EC2 instance terminated with boto3 against the emulated endpoint (remediation), a machine of
the OnDelete deployment deleted with the deployment's `delete_machines` Update (CAPI's
`kubectl delete machine`). After each step it fetches the histories that step completed
(`fetch_history()`, one run each), checks that each replays on this checkout's workflow code,
and writes it to `<out>/<WorkflowType>/<path>.json`, one event per line. Long-running workflows
are recorded as snapshots: ClusterWorkflow/create.json is the cluster's history once it is Ready,
upgrade.json the same workflow's history once the upgrade is done, and so on.

The cluster (tests/histories/manifests/hist.yaml): 1 control plane (scaled to 3 and back), md-0
(RollingUpdate) and md-1 (OnDelete) with one worker each, a MachineHealthCheck on md-0.

Files the recorder does not write are left alone: a history recorded before a `workflow.patched`
change (docs/versioning.md) stays committed until the patch is retired. `<out>/index.json` lists
every file with its workflow id, run id, event count, size and the build that recorded it.

At the end it prints what it wrote and, per workflow type, the largest history it saw in the
namespace (events and bytes). The stack is stopped whatever happens (unless --keep-stack); its
state dir (logs) is kept when a step failed.
"""
