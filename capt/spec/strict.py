"""Unknown fields are errors; fields capt does not implement are errors that say so.

Two checks, after the readers ran (so each problem names the document, object and field path):

1. **The API's shape** (`capt/spec/schema.py`: every field of each kind in v1alpha3 … v1beta2, from
   the CAPI/CAPA API types): a field the document's apiVersion does not define is "unknown" with a
   did-you-mean (`spec.replica: unknown field; did you mean "replicas"?`), or names the versions
   that do define it; a field Cluster API / CAPA define that capt does not implement is "not
   supported by capt" (listed in the README) unless left at its zero value.
2. **What capt actually read** (capt/spec/documents.py records every path a reader asked for): a field
   the schema admits but no reader looked at would be silently dropped — it is refused as
   not supported too. This keeps the schema honest as readers change.

Maps and documents owned by someone else (labels, annotations, tags, kubeadm's configuration
documents, a ConfigMap's data) are not looked into.
"""

from __future__ import annotations

import difflib
from typing import Any

from capt.spec.documents import Doc, type_problem
from capt.spec.schema import SCHEMAS
from capt.spec.schema_base import ANY, FREE, IGNORED, VERSIONS, ListOf, NotSupported

_MISSING = object()


def check(doc: Doc, read_fully: bool) -> None:
    """Report every unknown or unsupported field of `doc` (a kind and version capt reads).
    `read_fully`: the readers went through the whole document (it was used for the cluster and
    had no other problem), so a field no reader asked for is one capt would drop."""
    schema = SCHEMAS.get(doc.kind, {}).get(doc.version)
    if schema is None:
        return
    before = len(doc.problems)
    _walk(doc, doc.body, schema, "", ())
    if read_fully and len(doc.problems) == before:
        _unread(doc, doc.body, schema, "")


# --- 1. the API's shape ------------------------------------------------------------------------


def _walk(doc: Doc, value: Any, node: Any, path: str, parts: tuple[str, ...]) -> None:
    if value is None or node is ANY or node is FREE or node is IGNORED or isinstance(node, NotSupported):
        return
    if isinstance(node, ListOf):
        if not isinstance(value, list):
            doc.problem(path, type_problem(value, "list", path))
            return
        for i, item in enumerate(value):
            _walk(doc, item, node.item, f"{path}[{i}]", parts)
        return
    if not isinstance(value, dict):
        doc.problem(path, type_problem(value, "mapping", path))
        return
    for raw_key, sub_value in value.items():
        key = str(raw_key)
        sub_path = f"{path}.{key}" if path else key
        sub = node.get(key, _MISSING)
        if sub is _MISSING:
            doc.problem(sub_path, _unknown(doc, node, key, parts + (key,)))
        elif isinstance(sub, NotSupported):
            if not _empty(sub_value):
                doc.problem(sub_path, _not_supported(sub.reason))
        else:
            _walk(doc, sub_value, sub, sub_path, parts + (key,))


def _not_supported(reason: str) -> str:
    return "is not supported by capt" + (f" ({reason})" if reason else "")


def _empty(value: Any) -> bool:
    """An unsupported field left at its zero value (null, false, "", {} or []) asks for nothing."""
    return value is None or value is False or value == "" or value == {} or value == []


def _unknown(doc: Doc, node: dict, key: str, parts: tuple[str, ...]) -> str:
    message = "unknown field"
    elsewhere = [
        v
        for v in VERSIONS
        if v != doc.version and _lookup(SCHEMAS.get(doc.kind, {}).get(v), parts) is not _MISSING
    ]
    if elsewhere:
        message += f" in {doc.version} (only in {', '.join(elsewhere)})"
    candidates = [k for k, sub in node.items() if sub is not IGNORED]
    # A field of another version is most likely that version's shape, not a typo: suggest only
    # a near-identical name then (networkSpec -> network).
    if close := _suggest(key, candidates, strict=bool(elsewhere)):
        message += f'; did you mean "{close}"?'
    return message


def _suggest(key: str, candidates: list[str], strict: bool) -> str | None:
    """The known field `key` was most likely meant to be: the same name in another case, one it
    begins (`cidr` -> `cidrBlock`), or the closest by difflib."""
    lower = key.lower()
    for c in candidates:
        if c.lower() == lower:
            return c
    if not strict and len(key) >= 3:
        prefixed = sorted((c for c in candidates if c.lower().startswith(lower)), key=len)
        if prefixed:
            return prefixed[0]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75 if strict else 0.6)
    return close[0] if close else None


def _lookup(node: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        while isinstance(node, ListOf):
            node = node.item
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


# --- 2. what capt read --------------------------------------------------------------------------


def _taken(doc: Doc, path: str) -> bool:
    """A reader asked for this path, something under it, or took a map/list above it whole."""
    if path in doc.read or any(p.startswith(path + ".") for p in doc.read):
        return True
    return any(path.startswith(w + ".") or path == w for w in doc.whole)


def _unread(doc: Doc, value: Any, node: Any, path: str) -> None:
    """Fields the schema admits (ANY) that no reader asked for: they would be dropped silently."""
    if not isinstance(value, dict) or not isinstance(node, dict):
        return
    for raw_key, sub_value in value.items():
        key = str(raw_key)
        sub_path = f"{path}.{key}" if path else key
        sub = node.get(key, _MISSING)
        if sub is _MISSING or sub is FREE or sub is IGNORED or isinstance(sub, NotSupported):
            continue
        if path == "" and key in ("apiVersion", "kind", "metadata"):
            continue
        if sub_value is None or _taken(doc, sub_path) and not isinstance(sub, dict):
            continue
        if isinstance(sub, dict):
            if _taken(doc, sub_path) or any(p.startswith(sub_path + ".") for p in doc.read):
                _unread(doc, sub_value, sub, sub_path)
            elif not _empty(sub_value):
                doc.problem(sub_path, _not_supported(""))
        elif not _taken(doc, sub_path) and not _empty(sub_value):
            doc.problem(sub_path, _not_supported(""))
