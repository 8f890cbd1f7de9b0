"""Every workflow class the worker registers. Add new workflows here."""

WORKFLOWS: list[type] = []
