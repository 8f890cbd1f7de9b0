"""The bad-input corpus (issue 17): manifests and CLI invocations a user gets wrong. Each case runs
`capt` in-process and must end with exit code 2 and the exact problem line, having made **0 AWS
API calls** (every botocore call is counted) and **0 connections to Temporal** (so no workflow
started). Running clusters' validators (version downgrades, skipped minors, scaling a missing
deployment) are judged by the workflows before anything enters history: their tables are in
tests/workflows/ (test_control_plane.py, test_machine_deployment.py, test_cluster_changes.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import yaml
from click.testing import CliRunner

from capt import cli
from tests.support.paths import QUICKSTART

BASE = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]


def of(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


def kcp(docs):
    return of(docs, "KubeadmControlPlane")["spec"]


def md(docs):
    return of(docs, "MachineDeployment")["spec"]


def awsc(docs):
    return of(docs, "AWSCluster")["spec"]


def cp_template(docs):
    return next(d for d in docs if d["kind"] == "AWSMachineTemplate")["spec"]["template"]["spec"]


def mhc(docs):
    return of(docs, "MachineHealthCheck")["spec"]


def cluster(docs):
    return of(docs, "Cluster")


def _crs(docs, resources):
    docs.append(
        {
            "apiVersion": "addons.cluster.x-k8s.io/v1beta1",
            "kind": "ClusterResourceSet",
            "metadata": {"name": "addons", "namespace": "capi-quickstart"},
            "spec": {"clusterSelector": {"matchLabels": {"cni": "calico"}}, "resources": resources},
        }
    )
    cluster(docs)["metadata"]["labels"] = {"cni": "calico"}


def _config_map(docs, name, data):
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "capi-quickstart"},
            "data": data,
        }
    )


def _big_addon(docs, size):
    _crs(docs, [{"kind": "ConfigMap", "name": "big"}])
    _config_map(
        docs,
        "big",
        {"big.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n  x: " + "a" * size},
    )


def _many_tags(docs, n):
    awsc(docs)["additionalTags"] = {f"team-tag-{i}": "x" for i in range(n)}


def _set(getter: Callable, **fields) -> Callable:
    def edit(docs):
        getter(docs).update(fields)

    return edit


def _secret_in_config_map(docs):
    _crs(docs, [{"kind": "ConfigMap", "name": "leak"}])
    _config_map(
        docs,
        "leak",
        {"s.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n"},
    )


BOMB = (
    "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
)

# (id, edit of the quickstart documents or raw text, the exact problem text expected)
MANIFEST_CASES: list[tuple[str, Callable | str, str]] = [
    ("kcp-replica-typo", _set(kcp, replica=3), 'spec.replica: unknown field; did you mean "replicas"?'),
    (
        "kcp-version-float",
        _set(kcp, version=1.20),
        'spec.version: got the number 1.2; write the Kubernetes version as a quoted string with a v prefix, e.g. "v1.20.5"',
    ),
    ("kcp-version-short", _set(kcp, version="v1.20"), "spec.version: 'v1.20' is not a Kubernetes version"),
    ("kcp-replicas-even", _set(kcp, replicas=4), "spec.replicas: 4 is even"),
    ("kcp-replicas-9", _set(kcp, replicas=9), "spec.replicas: 9 is more than 7"),
    ("kcp-replicas-zero", _set(kcp, replicas=0), "spec.replicas: must be at least 1"),
    (
        "kcp-replicas-string",
        _set(kcp, replicas="3"),
        'spec.replicas: got the string "3"; write 3 (a number, without quotes)',
    ),
    (
        "kcp-max-surge-2",
        lambda d: kcp(d)["rolloutStrategy"]["rollingUpdate"].update(maxSurge=2),
        "must be 0 or 1 for a KubeadmControlPlane, got 2",
    ),
    (
        "kcp-strategy-type",
        lambda d: kcp(d)["rolloutStrategy"].update(type="Recreate"),
        "spec.rolloutStrategy.type: must be RollingUpdate",
    ),
    (
        "kcp-kubeadm-typo",
        lambda d: kcp(d)["kubeadmConfigSpec"].update(preKubeadmCommand=["x"]),
        'spec.kubeadmConfigSpec.preKubeadmCommand: unknown field; did you mean "preKubeadmCommands"?',
    ),
    (
        "kcp-ignition",
        lambda d: kcp(d)["kubeadmConfigSpec"].update(format="ignition"),
        "ignition is not supported by capt yet",
    ),
    (
        "kcp-disk-setup",
        lambda d: kcp(d)["kubeadmConfigSpec"].update(diskSetup={"partitions": []}),
        "spec.kubeadmConfigSpec.diskSetup: is not supported by capt",
    ),
    (
        "md-replicas-99999",
        _set(md, replicas=99999),
        "spec.replicas: 99999 is more than capt's limit of 1000 machines per MachineDeployment",
    ),
    (
        "md-replicas-1e9",
        _set(md, replicas="1e9"),
        'spec.replicas: got the string "1e9"; write a whole number',
    ),
    ("md-replicas-negative", _set(md, replicas=-1), "spec.replicas: must not be negative, got -1"),
    (
        "md-replicas-float",
        _set(md, replicas=2.0),
        "spec.replicas: got the number 2.0; write 2 (a whole number)",
    ),
    (
        "md-strategy-type",
        lambda d: md(d)["strategy"].update(type="Recreate"),
        "must be RollingUpdate or OnDelete, got 'Recreate'",
    ),
    (
        "md-surge-and-unavailable-zero",
        lambda d: md(d)["strategy"]["rollingUpdate"].update(maxSurge=0, maxUnavailable=0),
        "maxSurge and maxUnavailable must not both be 0",
    ),
    (
        "md-surge-garbage",
        lambda d: md(d)["strategy"]["rollingUpdate"].update(maxSurge="lots"),
        "spec.strategy.rollingUpdate.maxSurge",
    ),
    (
        "md-skew-4-minors",
        lambda d: md(d)["template"]["spec"].update(version="v1.16.0"),
        "is more than 3 minor versions older than the control plane's v1.20.5",
    ),
    (
        "md-newer-than-cp",
        lambda d: md(d)["template"]["spec"].update(version="v1.21.0"),
        "newer than the control plane's v1.20.5",
    ),
    (
        "md-name-252",
        lambda d: (
            md(d).__setitem__("x", None) or of(d, "MachineDeployment")["metadata"].update(name="m" * 252)
        ),
        "metadata.name: 252 characters",
    ),
    (
        "md-template-typo",
        lambda d: md(d)["template"]["spec"].update(verison="v1.20.5"),
        'spec.template.spec.verison: unknown field; did you mean "version"?',
    ),
    (
        "md-cluster-mismatch",
        _set(md, clusterName="other"),
        "spec.clusterName: 'other' is not the manifest's cluster 'capi-quickstart'",
    ),
    (
        "cluster-topology",
        lambda d: cluster(d)["spec"].update(topology={"class": "x"}),
        "spec.topology: ClusterClass-based (managed topology) clusters are not supported",
    ),
    (
        "cluster-name-upper",
        lambda d: cluster(d)["metadata"].update(name="Prod"),
        "a cluster name must be a DNS-1123 label",
    ),
    (
        "cluster-paused-yes",
        lambda d: cluster(d)["spec"].update(paused="yes"),
        'spec.paused: got the string "yes"; write true (without quotes)',
    ),
    (
        "cluster-metadata-typo",
        lambda d: cluster(d)["metadata"].update(namspace="x"),
        'metadata.namspace: unknown field; did you mean "namespace"?',
    ),
    (
        "namespace-slash",
        lambda d: [x["metadata"].update(namespace="team/x") for x in d],
        "metadata.namespace",
    ),
    (
        "cluster-ref-missing",
        lambda d: cluster(d)["spec"]["infrastructureRef"].update(name="nope"),
        "AWSCluster capi-quickstart/nope is not in the manifest",
    ),
    (
        "two-clusters",
        lambda d: d.append(
            copy.deepcopy(cluster(d)) | {"metadata": {"name": "b", "namespace": "capi-quickstart"}}
        ),
        "a manifest must hold exactly one Cluster, found 2",
    ),
    ("no-cluster", lambda d: d.remove(cluster(d)), "a manifest must hold exactly one Cluster, found 0"),
    (
        "pods-overlap-vpc",
        lambda d: cluster(d)["spec"]["clusterNetwork"]["pods"].update(cidrBlocks=["10.0.0.0/16"]),
        "spec.clusterNetwork.pods.cidrBlocks[0]",
    ),
    (
        "aws-top-typo",
        lambda d: of(d, "AWSCluster").update(sepc={}),
        'sepc: unknown field; did you mean "spec"?',
    ),
    (
        "aws-identity",
        _set(awsc, identityRef={"kind": "AWSClusterStaticIdentity", "name": "x"}),
        "spec.identityRef: is not supported by capt",
    ),
    (
        "aws-63-tags",
        lambda d: _many_tags(d, 63),
        "63 user tags plus capt's 6 make 69: AWS allows 50 per resource",
    ),
    (
        "aws-tag-aws-prefix",
        _set(awsc, additionalTags={"aws:cost": "x"}),
        "spec.additionalTags.aws:cost: tag keys starting with aws: are reserved by AWS",
    ),
    (
        "aws-tag-spoofs-owner",
        _set(awsc, additionalTags={"sigs.k8s.io/cluster-api-provider-aws/cluster/other": "owned"}),
        "a user tag may not override it",
    ),
    (
        "aws-tag-name",
        _set(awsc, additionalTags={"Name": "mine"}),
        "spec.additionalTags.Name: is a tag capt sets",
    ),
    (
        "aws-duplicate-subnets",
        lambda d: awsc(d)["networkSpec"].update(
            subnets=[
                {"cidrBlock": "10.0.1.0/24", "availabilityZone": "ap-northeast-2a"},
                {"cidrBlock": "10.0.1.0/24", "availabilityZone": "ap-northeast-2b", "isPublic": True},
            ]
        ),
        "subnets[1].cidrBlock: 10.0.1.0/24 overlaps 10.0.1.0/24",
    ),
    (
        "aws-subnet-outside-vpc",
        lambda d: awsc(d)["networkSpec"].update(
            subnets=[{"cidrBlock": "172.16.0.0/24", "availabilityZone": "ap-northeast-2a"}]
        ),
        "subnets[0].cidrBlock",
    ),
    (
        "aws-bad-cidr",
        lambda d: awsc(d)["networkSpec"].setdefault("vpc", {}).update(cidrBlock="10.0.0.0/33"),
        "vpc.cidrBlock",
    ),
    (
        "template-typo",
        lambda d: cp_template(d).update(instanceTyp="t3.large"),
        'spec.template.spec.instanceTyp: unknown field; did you mean "instanceType"?',
    ),
    (
        "template-hop-65",
        lambda d: cp_template(d).update(instanceMetadataOptions={"httpPutResponseHopLimit": 65}),
        "httpPutResponseHopLimit: must be 1 to 64, got 65",
    ),
    (
        "template-tokens",
        lambda d: cp_template(d).update(instanceMetadataOptions={"httpTokens": "sometimes"}),
        "httpTokens: must be required or optional, got 'sometimes'",
    ),
    (
        "mhc-typo",
        _set(mhc, maxUnhealty="40%"),
        'spec.maxUnhealty: unknown field; did you mean "maxUnhealthy"?',
    ),
    ("mhc-timeout", _set(mhc, nodeStartupTimeout="10 minutes"), "spec.nodeStartupTimeout"),
    ("kind-missing", lambda d: of(d, "AWSCluster").pop("kind"), "kind: is required"),
    (
        "wrong-group",
        lambda d: of(d, "KubeadmControlPlane").update(apiVersion="cluster.x-k8s.io/v1beta1"),
        "is not a KubeadmControlPlane API version (group must be 'controlplane.cluster.x-k8s.io')",
    ),
    (
        "unsupported-version",
        lambda d: cluster(d).update(apiVersion="cluster.x-k8s.io/v1alpha1"),
        "unsupported version 'v1alpha1'",
    ),
    ("crs-secret-in-configmap", _secret_in_config_map, "data.s.yaml: embeds a kind: Secret"),
    (
        "crs-strategy",
        lambda d: (_crs(d, []), of(d, "ClusterResourceSet")["spec"].update(strategy="Always")),
        "must be ApplyOnce or Reconcile, got 'Always'",
    ),
    (
        "secret-ref-missing",
        lambda d: kcp(d)["kubeadmConfigSpec"].update(
            files=[{"path": "/x", "contentFrom": {"secret": {"name": "nope", "key": "k"}}}]
        ),
        "contentFrom.secret.name: Secret capi-quickstart/nope is not in the manifest",
    ),
    (
        "input-too-large",
        lambda d: _big_addon(d, 300 * 1024),
        "a workflow input may be at most 256 KiB. Largest parts: ConfigMap big of ClusterResourceSet addons",
    ),
    (
        "document-over-1mib",
        lambda d: _big_addon(d, 1100 * 1024),
        "one document may be at most 1048576 (1 MiB)",
    ),
    ("broken-yaml", "kind: Cluster\n  bad: [indent\n", "invalid YAML at line"),
    ("not-a-mapping", "- a\n- b\n", "a document must be a mapping with apiVersion and kind"),
    ("alias-bomb", BOMB, "expands to more than 100000 nodes through its aliases"),
    (
        "credential-from-env",
        lambda d: kcp(d)["kubeadmConfigSpec"].update(
            files=[{"path": "/k", "content": "${AWS_SECRET_ACCESS_KEY}"}]
        ),
        "AWS_SECRET_ACCESS_KEY look like credentials and are taken only from --var",
    ),
    (
        "missing-variable",
        lambda d: kcp(d).update(version="${K8S_VERSION_UNSET}"),
        "1 variable(s) required by the manifest are not set: K8S_VERSION_UNSET",
    ),
]

# (id, arguments, the exact text expected) — judged before anything connects.
CLI_CASES: list[tuple[str, list[str], str]] = [
    (
        "scale-cp-even",
        ["scale", "controlplane", "c", "--replicas", "4"],
        "Invalid value for --replicas: 4 is even",
    ),
    (
        "scale-cp-9",
        ["scale", "controlplane", "c", "--replicas", "9"],
        "Invalid value for --replicas: 9 is more than 7",
    ),
    (
        "scale-md-negative",
        ["scale", "machinedeployment", "c", "md-0", "--replicas", "-1"],
        "Invalid value for --replicas: must not be negative, got -1",
    ),
    (
        "scale-md-5000",
        ["scale", "machinedeployment", "c", "md-0", "--replicas", "5000"],
        "5000 is more than capt's limit of 1000",
    ),
    (
        "scale-md-not-int",
        ["scale", "machinedeployment", "c", "md-0", "--replicas", "three"],
        "'three' is not a valid integer",
    ),
    (
        "upgrade-bad-version",
        ["upgrade", "c", "--version", "1.2"],
        "Invalid value for --version: '1.2' is not a Kubernetes version",
    ),
    (
        "upgrade-no-patch",
        ["upgrade", "c", "--version", "v1.21"],
        "Invalid value for --version: 'v1.21' is not a Kubernetes version",
    ),
    (
        "apply-bad-timeout",
        ["apply", "-f", str(QUICKSTART), "--wait", "--timeout", "abc"],
        "Invalid value for --timeout: 'abc' is not a duration",
    ),
    (
        "apply-missing-file",
        ["apply", "-f", "/nonexistent/cluster.yaml"],
        "cannot read /nonexistent/cluster.yaml: No such file or directory",
    ),
    ("apply-no-file", ["apply"], "Missing option '-f' / '--file'"),
    (
        "var-without-equals",
        ["validate", "-f", str(QUICKSTART), "--var", "NOPE"],
        "--var expects KEY=VALUE, got 'NOPE'",
    ),
    (
        "validate-bad-output",
        ["validate", "-f", str(QUICKSTART), "-o", "xml"],
        "Invalid value for '-o' / '--output'",
    ),
    ("unknown-command", ["destroy"], "No such command 'destroy'"),
    (
        "delete-bad-timeout",
        ["delete", "cluster", "c", "--wait", "--timeout", "soon"],
        "Invalid value for --timeout: 'soon' is not a duration",
    ),
]


@pytest.fixture
def no_side_effects(monkeypatch):
    """Count AWS API calls and Temporal connections; both must stay 0."""
    import botocore.client

    from capt.client import clusters

    calls: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def counted(self, operation, params):
        calls.append(operation)
        return original(self, operation, params)

    async def no_connect(*args, **kwargs):
        calls.append("temporal:connect")
        raise AssertionError("bad input reached Temporal")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    monkeypatch.setattr(clusters, "connect", no_connect)
    return calls


def _render(edit: Callable | str) -> str:
    if isinstance(edit, str):
        return edit
    docs = copy.deepcopy(BASE)
    edit(docs)
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.mark.parametrize(("case", "edit", "expected"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
@pytest.mark.parametrize("command", ["validate", "apply"])
def test_a_bad_manifest_creates_nothing(no_side_effects, tmp_path, command, case, edit, expected):
    path = tmp_path / f"{case}.yaml"
    path.write_text(_render(edit))
    env = {"AWS_SECRET_ACCESS_KEY": "from-the-environment", "K8S_VERSION_UNSET": None}
    result = CliRunner().invoke(cli.main, [command, "-f", str(path)], env=env)
    assert result.exit_code == 2, result.output
    assert expected in result.output, result.output
    assert no_side_effects == []


@pytest.mark.parametrize(("case", "args", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_a_bad_invocation_creates_nothing(no_side_effects, case, args, expected):
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output, result.output
    assert no_side_effects == []


def test_the_corpus_is_large_enough():
    assert len(MANIFEST_CASES) + len(CLI_CASES) >= 60
    assert len({c[0] for c in MANIFEST_CASES + CLI_CASES}) == len(MANIFEST_CASES) + len(CLI_CASES)


def test_stdin_and_several_files_merge(tmp_path):
    docs = copy.deepcopy(BASE)
    first, rest = docs[:3], docs[3:]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all(first))
    ok = CliRunner().invoke(
        cli.main, ["validate", "-f", str(tmp_path / "a.yaml"), "-f", "-"], input=yaml.safe_dump_all(rest)
    )
    assert ok.exit_code == 0, ok.output
    assert "Cluster capi-quickstart/capi-quickstart" in ok.output


def test_var_file_then_var(tmp_path):
    text = QUICKSTART.read_text().replace("version: v1.20.5", "version: ${K8S}")
    (tmp_path / "m.yaml").write_text(text)
    (tmp_path / "vars.yaml").write_text("K8S: v1.20.4\n")
    args = ["validate", "-f", str(tmp_path / "m.yaml"), "--var-file", str(tmp_path / "vars.yaml")]
    result = CliRunner().invoke(cli.main, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert '"version": "v1.20.4"' in result.output
    result = CliRunner().invoke(cli.main, [*args, "--var", "K8S=v1.20.5", "-o", "json"])
    assert '"version": "v1.20.5"' in result.output and '"K8S": "--var"' in result.output


def test_version_and_completion():
    assert CliRunner().invoke(cli.main, ["--version"]).output.strip() == "capt 0.1.0"
    for shell in ("bash", "zsh", "fish"):
        out = CliRunner().invoke(cli.main, ["completion", shell])
        assert out.exit_code == 0 and "_CAPT_COMPLETE" in out.output


def test_a_region_the_local_stack_does_not_play_is_refused(no_side_effects, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(QUICKSTART.read_text())
    result = CliRunner().invoke(cli.main, ["apply", "-f", str(path)], env={"CAPT_DEV_REGION": "us-west-2"})
    assert result.exit_code == 2, result.output
    assert "the local stack plays us-west-2 only, and this cluster is in ap-northeast-2" in result.output
    assert "capt dev up --region ap-northeast-2" in result.output
    assert no_side_effects == []
