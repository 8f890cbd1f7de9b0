"""EC2's eventual consistency for tests: a resource a create just made stays out of the matching
Describe* answers for a few reads (moto answers consistently; AWS does not, for seconds).

`LaggingReads` is an `after-call` hook (register with `activities.aws.session.hooked`). It can
also lose the answer of chosen creates once each, after AWS made the resource: the harshest
combination for a create that finds its earlier attempt's work by tags.
"""

from __future__ import annotations

import threading
from collections import Counter

from botocore.exceptions import ConnectionClosedError

# create operation -> (where the new resource is in the answer, its id field)
CREATES = {
    "CreateVpc": ("Vpc", "VpcId"),
    "CreateInternetGateway": ("InternetGateway", "InternetGatewayId"),
    "AllocateAddress": (None, "AllocationId"),
}
# describe operation -> (its list, the id field)
DESCRIBES = {
    "DescribeVpcs": ("Vpcs", "VpcId"),
    "DescribeInternetGateways": ("InternetGateways", "InternetGatewayId"),
    "DescribeAddresses": ("Addresses", "AllocationId"),
}


class LaggingReads:
    def __init__(self, reads: int, lose: set[str] = frozenset()) -> None:
        self.reads = reads
        self.lose = set(lose)
        self.lost: Counter[str] = Counter()
        self.hidden_reads: Counter[str] = Counter()  # how often an id was left out
        self._left: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, http_response, parsed, model, **kwargs) -> None:
        op = model.name
        if http_response.status_code >= 300:
            return
        if op in CREATES:
            where, id_field = CREATES[op]
            new_id = (parsed[where] if where else parsed)[id_field]
            with self._lock:
                self._left[new_id] = self.reads
                lose = op in self.lose and not self.lost[op]
                if lose:
                    self.lost[op] += 1
            if lose:
                raise ConnectionClosedError(endpoint_url=f"https://{op}.example.invalid")
        elif op in DESCRIBES:
            key, id_field = DESCRIBES[op]
            kept = []
            with self._lock:
                for item in parsed.get(key, []):
                    if self._left.get(item[id_field], 0) > 0:
                        self._left[item[id_field]] -= 1
                        self.hidden_reads[item[id_field]] += 1
                        continue
                    kept.append(item)
            parsed[key] = kept
