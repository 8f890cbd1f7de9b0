"""Lost-response safety for every create capt makes in AWS.

A *lost response* is a create that succeeded in AWS whose answer never reached the activity
(a dropped connection, a read timeout, a worker killed mid-call). Temporal retries the activity,
and the retry must end with the resource the lost call made, never with a second one. AWS's
reads are eventually consistent: for seconds after a create, Describe*/List* may not show the
new resource, so "look it up, create if missing" alone is not enough.

How each create call is made safe:

| call | activity | protection |
|---|---|---|
| RunInstances (machines) | `instances.ensure_instance` | ClientToken per machine incarnation; found by `capt/machine` + owned tag first |
| RunInstances (bastion) | `bastion.ensure_bastion` | ClientToken per run and subnet; found by Name + owned tag first |
| CreateNatGateway | `gateways.ensure_nat_gateway` | ClientToken per run and subnet; found by Name + owned tag first |
| CreateRouteTable | `route_tables.ensure_route_table` | ClientToken per run and VPC; found by Name + owned tag first |
| CreateVpc | `vpc.ensure_vpc` | no ClientToken, no unique name: `find_or_create` below |
| CreateInternetGateway | `gateways.ensure_internet_gateway` | no ClientToken, no unique name: `find_or_create` below |
| AllocateAddress | `gateways.ensure_eip` | no ClientToken, no unique name: `find_or_create` below |
| CreateSubnet | `subnets.ensure_subnet` | the CIDR is unique in the VPC: `InvalidSubnet.Conflict` = ours if the read by CIDR shows it with our Name and owned tag, not visible yet if it shows nothing |
| CreateSecurityGroup | `security_groups.ensure_security_group` | the name is unique in the VPC: `InvalidGroup.Duplicate` with nothing visible = not visible yet |
| CreateLoadBalancer (classic) | `load_balancer.ensure_load_balancer` | the name is unique in the region: `DuplicateAccessPointName` with nothing visible = not visible yet |
| CreateLoadBalancer (v2), CreateTargetGroup | `load_balancer.ensure_load_balancer` | the name is unique in the region: AWS answers a repeat with the same settings with the existing one; `Duplicate*Name` with nothing visible = not visible yet |
| CreateListener | `load_balancer.ensure_load_balancer` | one listener per port: AWS answers a repeat with the same settings with the existing one; `DuplicateListener` = done |
| CreateSecret (PKI, bootstrap tokens) | `secrets.ensure_cluster_pki`, `secrets.ensure_bootstrap_token` | the name is unique: `ResourceExistsException` = read the stored value (not visible yet: retried) |
| CreateSecret (bootstrap data) | `kubeadm.bootstrap.prepare_bootstrap_data` | random names by design (nodes must not guess them): found as a complete, tagged copy first; a retry that finds none waits for reads as `find_or_create` does; a copy made anyway is deleted with the machine's bootstrap data (found by the machine tag) |
| CreateQueue, PutRule, PutTargets | `instance_events.ensure_instance_events` | one name per cluster: CreateQueue with the same name and attributes returns the queue (its policy is set separately), PutRule and PutTargets overwrite |
| CreateRole, CreatePolicy, CreateInstanceProfile | `iam` (`capt bootstrap iam`, a CLI run, not an activity) | fixed names: `EntityAlreadyExists` = found |

Not creates, but also repeated after a lost response: CreateRoute (`RouteAlreadyExists` → replace),
AssociateRouteTable / AttachInternetGateway (`Resource.AlreadyAssociated`), Authorize / Revoke
rules (`InvalidPermission.Duplicate` / `.NotFound`), ModifyVpcAttribute and the like (setting a
value again changes nothing), RegisterTargets / RegisterInstancesWithLoadBalancer (idempotent).
SSM SendCommand (`workload.etcd`) runs its script again after a lost answer: the member list is
read-only, and the removal script removes a member only while it is still listed.

`find_or_create`, for the creates with neither a ClientToken nor a unique name:

1. look the resource up by its Name and the cluster's owned tag (as before);
2. on a retry (attempt > 1), look it up by the step's token tag `capt/create-token=<token>`,
   the token derived as ClientTokens are (`client_tokens.client_token`, scoped to the workflow
   run), which every attempt of this step puts on what it creates;
3. on a retry that found nothing, attempts 2 to `VISIBILITY_ATTEMPTS - 1` raise
   `NotYetVisibleError` (retryable) instead of creating: with the AWS retry policy's backoff
   (1 s, 2 s, 4 s) reads get about 7 s to show what an earlier attempt made;
4. create with the owned tags and the token tag in the call (TagSpecifications), so the
   resource is never untagged.

A first attempt looks up once and creates at once, as before: the wait is paid only after a
failure. A create on attempt `VISIBILITY_ATTEMPTS` or later is followed by a backoff of at least
8 s before the next attempt looks, so every create gets that long to become visible. The wait
is bounded (a create that never reached AWS must be made in the end): reads lagging past it
still make a second resource, which carries the same token, so a step's duplicates can be told
from everything else. Only resources carrying the cluster's owned tag are ever returned.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity

from capt.activities.aws import tags
from capt.activities.aws.client_tokens import client_token
from capt.activities.aws.errors import NotYetVisibleError
from capt.activities.aws.models import ClusterRef
from capt.activities.aws.session import _attempt

# Attempts that wait for reads before creating (attempt 1 never waits).
VISIBILITY_ATTEMPTS = 4


def before_create(what: str) -> None:
    """Call right before a create that found nothing by its tags (step 3 of the module doc)."""
    attempt = _attempt()
    if 1 < attempt < VISIBILITY_ATTEMPTS:
        raise NotYetVisibleError(
            f"no {what} found on attempt {attempt}: an earlier attempt's create may not be visible yet"
        )


def create_token(kind: str, cluster: str, name: str) -> str | None:
    """The step's token: the same for every attempt of this activity in this workflow run (None
    outside an activity, e.g. a direct call in a test or a CLI)."""
    try:
        run_id = activity.info().workflow_run_id
    except RuntimeError:
        return None
    return client_token(kind, cluster, name, scope=run_id) if run_id else None


def find_or_create(
    resource_type: str,
    what: str,
    cluster: ClusterRef,
    name: str,
    id_key: str,
    *,
    describe: Callable[[list[dict]], list[dict]],
    create: Callable[[list[dict]], dict],
) -> tuple[dict, bool]:
    """(resource, created): the cluster's `resource_type` named `name`, created at most once per
    step (steps 1-4 of the module doc).

    `describe(filters)` lists resources by EC2 filters (the results are checked client-side too);
    `create(tag_specifications)` creates one with those TagSpecifications -- the cluster's tags
    (role `common`) and the step's token -- and returns it. `what` names the resource in messages.
    """
    found = tags.pick_owned(describe([tags.name_filter(name)]), cluster.name, name, what, id_key)
    if found is not None:
        return found, False
    token = create_token(resource_type, cluster.name, name)
    if token is not None and _attempt() > 1:
        mine = [
            r
            for r in describe([tags.create_token_filter(token)])
            if tags.is_owned(tags.as_dict(r.get("Tags")), cluster.name)
            and tags.as_dict(r.get("Tags")).get(tags.CREATE_TOKEN_TAG) == token
        ]
        if mine:
            return min(mine, key=lambda r: r[id_key]), False
    before_create(f"{what} {name}")
    extra = {tags.CREATE_TOKEN_TAG: token} if token else {}
    built = tags.build(cluster.name, name, tags.ROLE_COMMON, additional=cluster.additional_tags, extra=extra)
    return create(tags.specification(resource_type, built)), True
