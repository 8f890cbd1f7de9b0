"""Every activity function the worker registers. Add new activities here."""

from collections.abc import Callable

ACTIVITIES: list[Callable] = []
