"""The custom search attributes capt keeps on workflows, declared once.

The Web UI's workflow list filters on these (e.g. `CaptCluster = "capi-quickstart"`).
`capt dev up` registers them on every start of the dev server (its `--search-attribute`
flag only applies when it creates a fresh database).
"""

from temporalio.common import SearchAttributeKey

CLUSTER_NAME = SearchAttributeKey.for_keyword("CaptCluster")
PHASE = SearchAttributeKey.for_keyword("CaptPhase")
KUBERNETES_VERSION = SearchAttributeKey.for_keyword("CaptKubernetesVersion")
READY_MACHINES = SearchAttributeKey.for_int("CaptReadyMachines")

ALL_SEARCH_ATTRIBUTES = (CLUSTER_NAME, PHASE, KUBERNETES_VERSION, READY_MACHINES)
