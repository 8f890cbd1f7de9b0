"""A machine's cloud-init, as CAPI's kubeadm bootstrap provider renders it: the KubeadmConfigSpec's
files, users, NTP and commands around kubeadm init/join, the PKI files a first control-plane
machine needs, the boothook that fetches secret material at boot, and the MIME user data."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

import jinja2

from capt.activities.kubeadm.documents import (
    BOOTSTRAP_FILE,
    FETCH_ATTEMPTS,
    GZIP_MTIME,
    INIT_CONFIG_PATH,
    JOIN_CONFIG_PATH,
    MIME_BOUNDARY,
    PKI_DIR,
    SUCCESS_COMMAND,
    BootstrapError,
    BootstrapKind,
    KubeadmInputs,
    cluster_configuration,
    dump_documents,
    init_configuration,
    join_configuration,
)
from capt.activities.kubeadm.pki import ClusterPKI
from capt.spec.models import KubeadmConfigSpec


def _q(value: Any) -> str:
    """A YAML flow scalar/collection for any JSON-able value (JSON is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


_NOT_LITERAL = re.compile(r"[\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u0085\u2028\u2029\ufeff]")


def _block(text: Any, indent: int) -> str:
    """`text` as a YAML literal block scalar whose lines are indented by `indent` spaces.

    Falls back to a quoted scalar where a literal block could not carry the text exactly:
    leading whitespace on the first line, carriage returns or other non-printables, empty text.
    """
    text = str(text)
    if not text or text[0] in " \t\n" or _NOT_LITERAL.search(text) or text.strip() == "":
        return _q(text)
    if text.endswith("\n\n"):
        chomp = "+"
    elif text.endswith("\n"):
        chomp = ""
    else:
        chomp = "-"
    pad = " " * indent
    body = text[:-1] if text.endswith("\n") else text
    lines = [(pad + line) if line else "" for line in body.split("\n")]
    return "|" + chomp + "\n" + "\n".join(lines)


def _sh(value: Any) -> str:
    return shlex.quote("" if value is None else str(value))


def template_environment() -> jinja2.Environment:
    """Jinja for our templates, with delimiters that cannot collide with cloud-init's Jinja."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("capt.templates", ""),
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<@",
        variable_end_string="@>",
        comment_start_string="<#",
        comment_end_string="#>",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["q"] = _q
    env.filters["block"] = _block
    env.filters["sh"] = _sh
    return env


_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = template_environment()
    return _ENV


def _file(path: str, content: str, permissions: str, owner: str = "root:root") -> dict:
    return {
        "path": path,
        "content": content,
        "owner": owner,
        "permissions": permissions,
        "encoding": None,
        "append": False,
    }


def pki_files(pki: ClusterPKI) -> list[dict]:
    """The shared key material under /etc/kubernetes/pki, with kubeadm's file modes."""
    return [
        _file(f"{PKI_DIR}/ca.crt", pki.ca.cert, "0644"),
        _file(f"{PKI_DIR}/ca.key", pki.ca.key, "0600"),
        _file(f"{PKI_DIR}/etcd/ca.crt", pki.etcd_ca.cert, "0644"),
        _file(f"{PKI_DIR}/etcd/ca.key", pki.etcd_ca.key, "0600"),
        _file(f"{PKI_DIR}/front-proxy-ca.crt", pki.front_proxy_ca.cert, "0644"),
        _file(f"{PKI_DIR}/front-proxy-ca.key", pki.front_proxy_ca.key, "0600"),
        _file(f"{PKI_DIR}/sa.pub", pki.sa.pub, "0644"),
        _file(f"{PKI_DIR}/sa.key", pki.sa.key, "0600"),
    ]


def _permissions(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BootstrapError(f"file permissions must be a string like '0644', got {value!r}")
    if isinstance(value, int):
        # YAML 1.1 reads an unquoted 0644 as the octal integer 420.
        return f"{value:04o}"
    return str(value)


SecretValues = dict[tuple[str, str], bytes]  # (Secret name, key) -> value


def secret_refs(spec: KubeadmConfigSpec) -> list[tuple[str, str]]:
    """Every (Secret name, key) the spec's files and users reference, in order, once each."""
    seen: dict[tuple[str, str], None] = {}
    sources = [f.get("contentFrom") for f in spec.files] + [u.get("passwdFrom") for u in spec.users]
    for source in sources:
        secret = source.get("secret") if isinstance(source, dict) else None
        if isinstance(secret, dict) and secret.get("name") and secret.get("key"):
            seen.setdefault((str(secret["name"]), str(secret["key"])), None)
    return list(seen)


def _secret_value(what: str, source: Any, secrets: SecretValues) -> bytes:
    secret = source.get("secret") if isinstance(source, dict) else None
    ref = (str(secret.get("name")), str(secret.get("key"))) if isinstance(secret, dict) else None
    if ref is None or ref not in secrets:
        raise BootstrapError(f"{what}: the referenced Secret value {ref} was not read")
    return secrets[ref]


def user_files(spec: KubeadmConfigSpec, secrets: SecretValues | None = None) -> list[dict]:
    out = []
    for f in spec.files:
        content = str(f.get("content") or "")
        encoding = f.get("encoding") or None
        if f.get("contentFrom"):
            # CAPI writes the Secret's value as the file's content, with the file's encoding.
            value = _secret_value(f"file {f.get('path')}", f["contentFrom"], secrets or {})
            try:
                content = value.decode()
            except UnicodeDecodeError:
                if encoding:
                    raise BootstrapError(
                        f"file {f.get('path')}: the Secret's value is binary; leave encoding unset"
                    ) from None
                content, encoding = base64.b64encode(value).decode(), "b64"
        out.append(
            {
                "path": str(f["path"]),
                "content": content,
                "owner": f.get("owner") or None,
                "permissions": _permissions(f.get("permissions")),
                "encoding": encoding,
                "append": bool(f.get("append", False)),
            }
        )
    return out


# CAPI User (camelCase) -> cloud-init users entry.
_USER_FIELDS = (
    ("gecos", "gecos"),
    ("groups", "groups"),
    ("homeDir", "homedir"),
    ("primaryGroup", "primary_group"),
    ("shell", "shell"),
    ("passwd", "passwd"),
    ("lockPassword", "lock_passwd"),
    ("sudo", "sudo"),
    ("sshAuthorizedKeys", "ssh_authorized_keys"),
)


def cloud_init_users(spec: KubeadmConfigSpec, secrets: SecretValues | None = None) -> list[dict]:
    users = []
    for u in spec.users:
        if not u.get("name"):
            raise BootstrapError("every user needs a name")
        passwd = u.get("passwd")
        if u.get("passwdFrom"):
            passwd = _secret_value(f"user {u['name']}", u["passwdFrom"], secrets or {}).decode()
        fields: list[tuple[str, Any]] = []
        for src, dst in _USER_FIELDS:
            value = passwd if src == "passwd" else u.get(src)
            if value is None or value == "" or value == []:
                continue
            if dst == "ssh_authorized_keys":
                value = [str(k) for k in value]
            fields.append((dst, value))
        inactive = u.get("inactive")
        if isinstance(inactive, str) and inactive:
            fields.append(("inactive", inactive))
        # A boolean `inactive` (CAPI's type) is ignored by cloud-init's useradd (it takes a number
        # of days as a string) and invalid in its schema; it is left out rather than guessed.
        users.append({"name": str(u["name"]), "fields": fields})
    return users


def _ntp(spec: KubeadmConfigSpec) -> dict | None:
    if not spec.ntp:
        return None
    servers = [str(s) for s in spec.ntp.get("servers") or []]
    enabled = spec.ntp.get("enabled")
    if enabled is None and not servers:
        return None
    return {"enabled": enabled, "servers": servers}


def join_command(spec: KubeadmConfigSpec) -> str:
    cmd = f"kubeadm join --config {JOIN_CONFIG_PATH}"
    if spec.use_experimental_retry_join:
        # CAPI's useExperimentalRetryJoin: retry a failed join after a reset (transient API or
        # etcd trouble while the control plane is still settling).
        cmd = (
            f"for i in 1 2 3 4 5; do {cmd} && break; "
            '[ "$i" -eq 5 ] && exit 1; kubeadm reset -f; sleep 10; done'
        )
    return cmd


@dataclass(frozen=True)
class RenderInput:
    """Everything a cloud-config needs, secrets included: exists only inside an activity."""

    kind: BootstrapKind
    kubeadm: KubeadmConfigSpec
    inputs: KubeadmInputs
    pki: ClusterPKI | None = None
    # The values of the Secrets the kubeadm spec references (read from Secrets Manager).
    secrets: SecretValues | None = None


def kubeadm_documents(r: RenderInput) -> list[dict]:
    if r.kind == "init":
        return [cluster_configuration(r.kubeadm, r.inputs), init_configuration(r.kubeadm, r.inputs)]
    return [join_configuration(r.kubeadm, r.inputs, control_plane=r.kind == "join-control-plane")]


_TEMPLATES: dict[str, str] = {
    "init": "kubeadm_init.j2",
    "join-control-plane": "kubeadm_join_control_plane.j2",
    "join-worker": "kubeadm_join_worker.j2",
}


def render_cloud_config(r: RenderInput) -> str:
    """The `## template: jinja` cloud-config for one machine (holds secrets: store, never log)."""
    if r.kubeadm.format != "cloud-config":
        raise BootstrapError(f"bootstrap format {r.kubeadm.format!r} is not supported (cloud-config only)")
    files: list[dict] = []
    if r.kind in ("init", "join-control-plane"):
        if r.pki is None:
            raise BootstrapError(f"{r.kind} needs the cluster PKI")
        files += pki_files(r.pki)
    files += user_files(r.kubeadm, r.secrets)
    context = {
        "write_files": files,
        "kubeadm_config_path": INIT_CONFIG_PATH if r.kind == "init" else JOIN_CONFIG_PATH,
        "kubeadm_config": dump_documents(kubeadm_documents(r)),
        "join_command": join_command(r.kubeadm),
        "success_command": SUCCESS_COMMAND,
        "pre_kubeadm_commands": list(r.kubeadm.pre_kubeadm_commands),
        "post_kubeadm_commands": list(r.kubeadm.post_kubeadm_commands),
        "ntp": _ntp(r.kubeadm),
        "users": cloud_init_users(r.kubeadm, r.secrets),
        "mounts": [list(m) for m in r.kubeadm.mounts],
    }
    return _env().get_template(_TEMPLATES[r.kind]).render(**context)


def render_boothook(
    *,
    secret_prefix: str,
    chunks: int,
    region: str,
    endpoint_url: str | None = None,
    file: str = BOOTSTRAP_FILE,
    attempts: int = FETCH_ATTEMPTS,
) -> str:
    if chunks < 1 or attempts < 1:
        raise ValueError("at least one chunk and one attempt")
    return (
        _env()
        .get_template("boothook.sh.j2")
        .render(
            region=region,
            endpoint=endpoint_url or "",
            prefix=secret_prefix,
            chunks=int(chunks),
            file=file,
            attempts=int(attempts),
        )
    )


def render_user_data(
    *,
    secret_prefix: str,
    chunks: int,
    region: str,
    endpoint_url: str | None = None,
    file: str = BOOTSTRAP_FILE,
) -> str:
    """The EC2 user data: a MIME document with the boothook and an include of the file it writes.

    Deterministic for the same arguments (RunInstances with the same ClientToken must be sent the
    same parameters). Holds no key and no token: only the secrets' name prefix and count.
    """
    boothook = render_boothook(
        secret_prefix=secret_prefix, chunks=chunks, region=region, endpoint_url=endpoint_url, file=file
    )
    return (
        _env()
        .get_template("user_data.mime.j2")
        .render(boundary=MIME_BOUNDARY, boothook=boothook.rstrip("\n"), file=file)
    )


def compress(cloud_config: str) -> bytes:
    return gzip.compress(cloud_config.encode(), compresslevel=9, mtime=GZIP_MTIME)
