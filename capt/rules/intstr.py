"""Kubernetes IntOrString as CAPI uses it for maxSurge, maxUnavailable and maxUnhealthy.

An int is taken as it is; a string must be a percentage ("25%"). A string without "%"
(even "5") is an error, as `intstr.GetScaledValueFromIntOrPercent` makes it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_PERCENT = re.compile(r"^(\d+)%$")


class IntOrPercentError(ValueError):
    pass


def check_int_or_percent(value: object) -> int | str:
    """Validate (not scale) an int-or-percent value; returns it unchanged."""
    if isinstance(value, bool):
        raise IntOrPercentError(f"{value!r} is not an integer or a percentage")
    if isinstance(value, int):
        if value < 0:
            raise IntOrPercentError(f"{value} must not be negative")
        return value
    if isinstance(value, str):
        if not _PERCENT.match(value):
            raise IntOrPercentError(
                f"{value!r} is not a percentage (a string must look like '25%'; write a bare integer without quotes)"
            )
        return value
    raise IntOrPercentError(f"{value!r} is not an integer or a percentage")


IntOrPercent = Annotated[int | str, BeforeValidator(check_int_or_percent)]


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """`intstr.GetScaledValueFromIntOrPercent`: an int as is, a percentage of `total`."""
    value = check_int_or_percent(value)
    if isinstance(value, int):
        return value
    percent = int(_PERCENT.match(value).group(1))  # type: ignore[union-attr]
    # Integer arithmetic: no float rounding surprises at exact multiples.
    return -(-percent * total // 100) if round_up else percent * total // 100
