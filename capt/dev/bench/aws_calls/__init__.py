"""Benchmark 2: AWS API calls per operation — network, machine, steady state, rolling upgrade.

    python -m capt.dev.bench aws_calls [--workers N] [--full] [--quick] [--results DIR]

Every number is botocore's `before-send` count (capt/activities/aws/session.py) of a real activity
against in-process moto, or such a count multiplied by how often the workflows run the activity:

1. Network: InfrastructureWorkflow creates the reference network, creates it again (a re-run
   finds everything) and deletes it (capt/dev/bench/infra_calls.py). Calls are split into reads and
   mutating calls (`is_mutating`); the create's *mutating minimum* is a census of what the
   create left in moto: one call per resource, plus one per setting that AWS's create call
   cannot carry and that differs from AWS's default (e.g. DNS hostnames on a VPC, public IPs
   on a subnet, a route, a route-table association, a security group's ingress rules — one
   Authorize per group, all its rules in one call). Tags cost nothing: create calls carry them.
2. Per machine: each machine-side activity runs once against moto (`activity_costs`); the
   workflows' executions of each activity per machine come from the fake cloud
   (capt/dev/testkit/fake_cloud.py) after time-skipping runs — a 3+3 ClusterWorkflow create under the
   latency model (bench/critical_path.measure) and a MachineDeployment of N workers created,
   rolled to a new template (maxSurge 1, maxUnavailable 0) and deleted.
3. Steady state: the health check's calls per hour for 3+3 and 3+50 (bench/health_aws_calls),
   against a modelled CAPA-style per-machine poll.
4. Rolling upgrade of N workers: total calls and per replaced machine.

moto answers at once: polls a real region needs while resources come up (NAT gateways,
instances pending longer than modelled) are in the latency model only where it models them.
"""

from capt.dev.bench.aws_calls.cli import main
from capt.dev.bench.aws_calls.report import plots, section, summary

__all__ = ["main", "plots", "section", "summary"]
