"""AWS calls of the health check in steady state: the same for a 3+3 and a 3+50 cluster.

The real `describe_cluster_instances` runs against in-process moto with the cluster's instances
(tagged as capt tags them); owners and nodes are fakes reporting every machine healthy. The
count comes from the activities' own botocore hooks (`aws_calls` in each result), totalled by the
workflow over half an hour of (skipped) workflow time."""

from __future__ import annotations

import pytest

from capt.dev.testkit.steady_cluster import measure_steady_state

# Half an hour keeps the test quick; capt/dev/bench/health_aws_calls.py runs the full hour.
HALF_HOUR_OF_INTERVALS = 1800 // 30


@pytest.mark.parametrize(("control_plane", "workers"), [(3, 3), (3, 50)])
async def test_one_describe_instances_per_interval_whatever_the_size(
    aws, time_skipping_env, task_queue, control_plane, workers
):
    status = await measure_steady_state(time_skipping_env, task_queue, control_plane, workers, hours=0.5)
    assert status.iterations == HALF_HOUR_OF_INTERVALS
    assert status.aws_calls == {"ec2:DescribeInstances": HALF_HOUR_OF_INTERVALS}
    # Every machine was seen healthy: the calls did cover all of them.
    assert {c.name: (c.expected, c.healthy) for c in status.checks} == {
        "cp": (control_plane, control_plane),
        "workers": (workers, workers),
    }
    assert not [e for e in status.events if e.kind != "settings"]
