"""Creates that AWS gives no ClientToken: CreateVpc, CreateInternetGateway, AllocateAddress.

capt tags them in the create call itself (TagSpecifications) and finds them by those tags, so a
retry after a lost response finds what the lost call made -- once reads show it. EC2's reads
are eventually consistent: right after a create, Describe* may not list the new resource yet,
and a retry that then creates again makes a second VPC, gateway or address.

So on a *retry* (attempt > 1) that finds nothing, the activity does not create at once: it
raises `NotYetVisibleError` (retryable) for attempts 2 and 3, which with the AWS retry policy's
backoff (1 s, 2 s, 4 s) gives reads about 7 s to catch up with whatever an earlier attempt
created, and creates from attempt 4 on. A first attempt creates at once, so the cost is paid
only after a failure. How every create call of capt is made safe against a lost response:

| call | protection |
|---|---|
| RunInstances, CreateNatGateway, CreateRouteTable | ClientToken (deterministic per machine incarnation, NAT, table) |
| CreateVpc, CreateInternetGateway, AllocateAddress | tags in the call + this guard |
| CreateSubnet | tags in the call; a lost create's CIDR conflicts (`InvalidSubnet.Conflict`), then found |
| CreateSecurityGroup | name unique per VPC (`InvalidGroup.Duplicate`), then found |
| CreateLoadBalancer (classic, v2), CreateTargetGroup | names unique per region and account: a repeat returns / finds the same |
| CreateSecret | name unique (`ResourceExistsException`), then found |
"""

from __future__ import annotations

from activities.aws.errors import NotYetVisibleError
from activities.aws.session import _attempt

# Attempts that wait for reads before creating (attempt 1 never waits).
VISIBILITY_ATTEMPTS = 4


def before_create(what: str) -> None:
    """Call right before a create that found nothing by its tags (see the module doc)."""
    attempt = _attempt()
    if 1 < attempt < VISIBILITY_ATTEMPTS:
        raise NotYetVisibleError(
            f"no {what} found on attempt {attempt}: an earlier attempt's create may not be visible yet"
        )
