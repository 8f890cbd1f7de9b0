"""`capt annotate machine`: kubectl's key=value / key- syntax, sent to the health workflow's
`annotate` Update (it keeps machine annotations: skip-remediation, paused, remediate-machine)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from capt import cli
from capt.client import clusters
from tests.support.context import running_worker
from tests.workflows.test_health import WORKFLOWS, Cluster


@pytest.mark.parametrize(
    ("pairs", "parsed"),
    [
        (("cluster.x-k8s.io/paused=",), {"cluster.x-k8s.io/paused": ""}),
        (("cluster.x-k8s.io/skip-remediation=true",), {"cluster.x-k8s.io/skip-remediation": "true"}),
        (("cluster.x-k8s.io/paused-",), {"cluster.x-k8s.io/paused": None}),
        (("a=1", "b-"), {"a": "1", "b": None}),
    ],
)
def test_parse_annotations(pairs, parsed) -> None:
    assert clusters.parse_annotations(pairs) == parsed


@pytest.mark.parametrize("bad", ["paused", "-", "bad key=1", "=x"])
def test_a_malformed_pair_is_refused_before_anything_is_sent(bad) -> None:
    result = CliRunner().invoke(cli.main, ["annotate", "machine", "prod", "m-1", bad])
    assert result.exit_code == 2 and "ANNOTATIONS" in result.output


async def test_annotations_reach_the_health_workflow(time_skipping_env, task_queue) -> None:
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        with pytest.raises(clusters.NotFound, match="no running health check"):
            await clusters.annotate_machine(c.env.client, "default", c.ctx.name, "m-1", {"a": "1"})
        await c.start_health()
        status = await clusters.annotate_machine(
            c.env.client, "default", c.ctx.name, "m-1", {"cluster.x-k8s.io/skip-remediation": ""}
        )
        assert status.annotations == {"m-1": {"cluster.x-k8s.io/skip-remediation": ""}}
