"""clusterctl-style variable substitution: `${VAR}` and `${VAR:-default}`.

Values come from `--var KEY=VALUE` first, then the environment. Every variable that has
neither a value nor a default is collected and reported in one error, as
`clusterctl generate cluster --list-variables` would list them. Other `$` forms (for
example `$(CSI_ENDPOINT)` inside an addon's ConfigMap) are left untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from spec.errors import MissingVariablesError

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:=default}, ${NAME=default}
_VARIABLE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(:?[-=])([^}]*))?\}")


def referenced_variables(text: str) -> list[str]:
    """Every variable name the text references, in first-seen order."""
    seen: dict[str, None] = {}
    for match in _VARIABLE.finditer(text):
        seen.setdefault(match.group(1), None)
    return list(seen)


def substitute(text: str, values: Mapping[str, str], env: Mapping[str, str]) -> str:
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3)
        value = values.get(name, env.get(name))
        if operator and operator.startswith(":") and value == "":
            value = None  # ${VAR:-d}: an empty value takes the default too
        if value is None:
            if operator is not None:
                return default
            missing.append(name)
            return match.group(0)
        return value

    result = _VARIABLE.sub(replace, text)
    if missing:
        raise MissingVariablesError(missing)
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
