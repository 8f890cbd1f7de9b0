"""What an instance's cloud-init would do with capt's user data — pure functions, no I/O.

1. The EC2 user data is a MIME document: a `text/cloud-boothook` part (capt's boothook, naming the
   Secrets Manager prefix and chunk count of the real bootstrap data) and a `text/x-include-url`
   part pointing at the file the boothook writes (`parse_user_data`).
2. The fetched bootstrap data is a gzipped `## template: jinja` cloud-config: cloud-init renders
   it with the instance's data (`{{ ds.meta_data.local_hostname }}` becomes the private DNS name)
   exactly as cloud-init's own `render_jinja_payload` does — hyphenated keys get underscore
   aliases, `v1` keys are promoted to the top level, an undefined variable renders as
   `CI_MISSING_JINJA_VAR/<name>` (`render_cloud_config`).
3. The cloud-config's `write_files` and `runcmd` say what kubeadm is asked to do: `kubeadm init` or
   `kubeadm join` with a config file whose YAML documents are kubeadm's (`parse_cloud_config`).
"""

from __future__ import annotations

import base64
import copy
import email
import email.policy
import gzip
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

import jinja2
import yaml

MISSING_JINJA_PREFIX = "CI_MISSING_JINJA_VAR/"
JINJA_HEADER = re.compile(r"^##\s*template:\s*jinja\s*$", re.IGNORECASE)
PKI_DIR = "/etc/kubernetes/pki"
_KUBEADM_RUN = re.compile(r"\bkubeadm\s+(init|join)\b.*?--config[ =](\S+)")
_OPERATOR = re.compile(r"[-.]")  # cloud-init's alias rule: operators in keys become "_"


class BootstrapFormatError(ValueError):
    """The user data or cloud-config is not something a capt node can act on."""


# --------------------------------------------------------------------------------------------
# 1. user data


@dataclass(frozen=True)
class Boothook:
    region: str
    endpoint: str
    prefix: str
    chunks: int
    file: str
    attempts: int = 6


def shell_vars(script: str) -> dict[str, str]:
    """Top-level `NAME=value` assignments of a shell script (values as the shell would read them)."""
    found: dict[str, str] = {}
    for line in script.splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if not m:
            continue
        try:
            words = shlex.split(m.group(2), comments=True)
        except ValueError:
            continue
        found[m.group(1)] = words[0] if words else ""
    return found


def parse_boothook(script: str) -> Boothook:
    v = shell_vars(script)
    missing = [k for k in ("REGION", "PREFIX", "CHUNKS") if not v.get(k)]
    if missing:
        raise BootstrapFormatError(f"boothook does not set {', '.join(missing)}")
    try:
        chunks = int(v["CHUNKS"])
    except ValueError:
        raise BootstrapFormatError(f"boothook CHUNKS is not a number: {v['CHUNKS']!r}") from None
    attempts = re.search(r"for attempt in \$\(seq 1 (\d+)\)", script)
    return Boothook(
        region=v["REGION"],
        endpoint=v.get("ENDPOINT", ""),
        prefix=v["PREFIX"],
        chunks=chunks,
        file=v.get("FILE", ""),
        attempts=int(attempts.group(1)) if attempts else 6,
    )


@dataclass(frozen=True)
class UserData:
    """Either a boothook naming where the bootstrap data is, or the cloud-config itself."""

    boothook: Boothook | None = None
    cloud_config: str | None = None


def parse_user_data(text: str) -> UserData:
    """The instance's user data → what cloud-init would run. Raises BootstrapFormatError for user
    data that is neither capt's boothook MIME document nor a cloud-config."""
    stripped = text.lstrip()
    first = stripped.split("\n", 1)[0].strip()
    if JINJA_HEADER.match(first) or first == "#cloud-config":
        return UserData(cloud_config=text)
    if first.startswith("#cloud-boothook"):
        return UserData(boothook=parse_boothook(stripped))
    msg = email.message_from_string(stripped, policy=email.policy.compat32)
    if not msg.is_multipart():
        raise BootstrapFormatError("user data is neither a MIME multipart document nor a cloud-config")
    for part in msg.walk():
        if part.get_content_type() == "text/cloud-boothook":
            payload = part.get_payload(decode=True)
            script = payload.decode() if isinstance(payload, bytes) else str(part.get_payload())
            return UserData(boothook=parse_boothook(script))
        if part.get_content_type() == "text/cloud-config":
            payload = part.get_payload(decode=True)
            return UserData(cloud_config=payload.decode() if isinstance(payload, bytes) else "")
    raise BootstrapFormatError("user data has no cloud-boothook or cloud-config part")


def chunk_names(hook: Boothook) -> list[str]:
    """The secrets the boothook reads, in order (`$PREFIX-$i`)."""
    return [f"{hook.prefix}-{i}" for i in range(hook.chunks)]


def boothook_retry_delays(hook: Boothook) -> list[int]:
    """Seconds the boothook sleeps after failed attempts to read a chunk (`sleep $((attempt * 5))`)."""
    return [attempt * 5 for attempt in range(1, hook.attempts)]


def reassemble(chunks: list[bytes]) -> str:
    """The chunks joined and gunzipped, as the boothook writes the file."""
    try:
        return gzip.decompress(b"".join(chunks)).decode()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise BootstrapFormatError(f"bootstrap data is not gzipped text: {err}") from None


# --------------------------------------------------------------------------------------------
# 2. cloud-init's jinja


class _Undefined(jinja2.Undefined):
    def __str__(self) -> str:
        return f"{MISSING_JINJA_PREFIX}{self._undefined_name}"


def jinja_variables(data: dict) -> dict:
    """cloud-init's convert_jinja_instance_data(include_key_aliases=True)."""
    out: dict[str, Any] = {}
    for key, value in sorted(data.items()):
        if isinstance(value, dict):
            out[key] = jinja_variables(value)
            if re.match(r"v\d+$", key):
                for sub, subvalue in out[key].items():
                    out[sub] = copy.deepcopy(subvalue)
        else:
            out[key] = value
        alias = _OPERATOR.sub("_", key)
        if alias != key:
            out[alias] = copy.deepcopy(out[key])
    return out


def ec2_instance_data(
    *,
    instance_id: str,
    local_hostname: str,
    local_ipv4: str,
    availability_zone: str,
    region: str,
    instance_type: str = "",
    image_id: str = "",
    architecture: str = "x86_64",
) -> dict:
    """The parts of /run/cloud-init/instance-data.json an EC2 instance has that templates use."""
    return {
        "ds": {
            "meta_data": {
                "ami-id": image_id,
                "hostname": local_hostname,
                "instance-id": instance_id,
                "instance-type": instance_type,
                "local-hostname": local_hostname,
                "local-ipv4": local_ipv4,
                "placement": {"availability-zone": availability_zone, "region": region},
            }
        },
        "v1": {
            "availability_zone": availability_zone,
            "cloud_name": "aws",
            "cloud_id": "aws",
            "distro": "ubuntu",
            "instance_id": instance_id,
            "local_hostname": local_hostname,
            "machine": architecture,
            "platform": "ec2",
            "region": region,
        },
    }


def render_cloud_config(text: str, instance_data: dict) -> tuple[str, list[str]]:
    """(rendered text, names of undefined variables). Text without the jinja header is returned
    as is, like cloud-init's basic renderer would for text without `$` variables."""
    head, _, rest = text.partition("\n")
    if not JINJA_HEADER.match(head.strip()):
        return text, []
    add = "\n" if rest.endswith("\n") else ""
    try:
        template = jinja2.Template(rest, undefined=_Undefined, trim_blocks=True, extensions=["jinja2.ext.do"])
        rendered = template.render(**jinja_variables(instance_data)) + add
    except (jinja2.TemplateError, TypeError) as err:
        raise BootstrapFormatError(f"cloud-init could not render the jinja template: {err}") from None
    missing = sorted(set(re.findall(re.escape(MISSING_JINJA_PREFIX) + r"([^\s'\"]+)", rendered)))
    return rendered, missing


# --------------------------------------------------------------------------------------------
# 3. cloud-config → kubeadm's task

KubeadmAction = Literal["init", "join"]


@dataclass(frozen=True)
class KubeadmTask:
    """What the cloud-config asks kubeadm to do, and with which files."""

    action: KubeadmAction
    config_path: str
    documents: tuple[dict, ...]
    files: dict[str, str] = field(default_factory=dict)  # path -> content (decoded)

    def document(self, kind: str) -> dict | None:
        return next((d for d in self.documents if d.get("kind") == kind), None)

    @property
    def control_plane_join(self) -> bool:
        join = self.document("JoinConfiguration")
        return self.action == "join" and join is not None and join.get("controlPlane") is not None

    def pki(self, name: str) -> str | None:
        return self.files.get(f"{PKI_DIR}/{name}")


def _decode(content: Any, encoding: str | None) -> str:
    data: bytes
    text = "" if content is None else str(content)
    enc = (encoding or "").lower()
    if enc in ("", "text/plain"):
        return text
    if enc in ("b64", "base64"):
        data = base64.b64decode(text)
    elif enc in ("gz", "gzip"):
        data = gzip.decompress(text.encode("latin-1"))
    elif enc in ("gz+base64", "gzip+base64", "gz+b64", "gzip+b64"):
        data = gzip.decompress(base64.b64decode(text))
    else:
        raise BootstrapFormatError(f"unknown write_files encoding {encoding!r}")
    return data.decode()


def parse_cloud_config(rendered: str) -> KubeadmTask:
    """Find the kubeadm command in runcmd and its config file in write_files."""
    try:
        doc = yaml.safe_load(rendered)
    except yaml.YAMLError as err:
        raise BootstrapFormatError(f"cloud-config is not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise BootstrapFormatError("cloud-config is not a mapping")
    files: dict[str, str] = {}
    for f in doc.get("write_files") or []:
        if not isinstance(f, dict) or not f.get("path"):
            raise BootstrapFormatError(f"write_files entry without a path: {f!r}")
        content = _decode(f.get("content"), f.get("encoding"))
        path = str(f["path"])
        files[path] = files.get(path, "") + content if f.get("append") else content
    action: KubeadmAction | None = None
    config_path = ""
    for cmd in doc.get("runcmd") or []:
        line = " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)
        m = _KUBEADM_RUN.search(line)
        if m:
            action, config_path = m.group(1), m.group(2)  # type: ignore[assignment]
            break
    if action is None:
        raise BootstrapFormatError("runcmd runs neither `kubeadm init --config` nor `kubeadm join --config`")
    if config_path not in files:
        raise BootstrapFormatError(f"kubeadm config {config_path} is not in write_files")
    try:
        documents = tuple(d for d in yaml.safe_load_all(files[config_path]) if d)
    except yaml.YAMLError as err:
        raise BootstrapFormatError(f"kubeadm config {config_path} is not valid YAML: {err}") from None
    if any(not isinstance(d, dict) or not d.get("kind") or not d.get("apiVersion") for d in documents):
        raise BootstrapFormatError(f"kubeadm config {config_path} holds a document without apiVersion/kind")
    # kubeadm also takes KubeletConfiguration / KubeProxyConfiguration documents in the same file.
    if not any(str(d["apiVersion"]).startswith("kubeadm.k8s.io/") for d in documents):
        raise BootstrapFormatError(f"kubeadm config {config_path} holds no kubeadm.k8s.io document")
    return KubeadmTask(action=action, config_path=config_path, documents=documents, files=files)
