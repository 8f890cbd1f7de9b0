"""clusterctl-style variable substitution: `${VAR}` and `${VAR:-default}`.

Values come from `--var KEY=VALUE` first, then the environment — except a variable whose name
looks like a credential (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `TEMPORAL_API_KEY`,
`*SECRET*`, `*TOKEN*`, `*PASSWORD*`, …): those come only from an explicit `--var`, so a manifest
cannot copy the operator's credentials into a workflow history by naming them. Every variable that has
neither a value nor a default is collected and reported in one error, as
`clusterctl generate cluster --list-variables` would list them. Other `$` forms (for
example `$(CSI_ENDPOINT)` inside an addon's ConfigMap) are left untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from capt.spec.errors import MissingVariablesError

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:=default}, ${NAME=default}
_VARIABLE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(:?[-=])([^}]*))?\}")


def referenced_variables(text: str) -> list[str]:
    """Every variable name the text references, in first-seen order."""
    seen: dict[str, None] = {}
    for match in _VARIABLE.finditer(text):
        seen.setdefault(match.group(1), None)
    return list(seen)


_CREDENTIAL_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "PRIVATE_KEY", "API_KEY")


def is_credential_like(name: str) -> bool:
    """A variable name that looks like it holds a credential (never read from the environment)."""
    upper = name.upper()
    return any(word in upper for word in _CREDENTIAL_WORDS)


Source = str  # "--var" | "environment" | "default"


def substitute(
    text: str,
    values: Mapping[str, str],
    env: Mapping[str, str],
    sources: dict[str, Source] | None = None,
) -> str:
    """Expand `${VAR}`s; `sources`, when given, records where each variable's value came from."""
    missing: list[str] = []
    refused: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3)
        source: Source = "--var"
        value = values.get(name)
        if value is None and name in env:
            if is_credential_like(name):
                refused.append(name)
            else:
                value, source = env[name], "environment"
        if operator and operator.startswith(":") and value == "":
            value = None  # ${VAR:-d}: an empty value takes the default too
        if value is None:
            if operator is not None:
                if sources is not None:
                    sources.setdefault(name, "default")
                return default
            missing.append(name)
            return match.group(0)
        if sources is not None:
            sources.setdefault(name, source)
        return value

    result = _VARIABLE.sub(replace, text)
    if missing:
        raise MissingVariablesError(missing, refused=[n for n in refused if n in missing])
    return result


def parse_var_options(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--var KEY=VALUE` options into a dict; a pair without `=` is a usage error."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--var expects KEY=VALUE, got {pair!r}")
        values[key.strip()] = value
    return values
