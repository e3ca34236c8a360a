"""``metadata.managedFields`` and server-side apply, as the API server keeps them, for the
Kubernetes test server (``kube_api``).

From the Kubernetes documentation (Server-Side Apply, "Field management"):

- Every write records who set which fields: an entry per (manager, operation, subresource),
  ``{manager, operation, apiVersion, time, fieldsType: FieldsV1, fieldsV1[, subresource]}``.
  The manager is the request's ``fieldManager``, else the User-Agent up to its first ``/``
  (kubernetes-asyncio sends ``OpenAPI-Generator/<version>/python``).
- A write that is not an apply (create, update, patch) is an ``Update``: the writer comes to
  own the fields whose values it set or changed, and they leave the other managers'
  entries; an entry left with no field is removed.
- A write through the ``scale`` subresource is an ``Update`` with ``subresource: scale``
  owning ``f:spec`` → ``f:replicas``.
- An apply (``application/apply-patch+yaml``) is an ``Apply``: the applier owns exactly the
  fields of its configuration. Applying a field another manager owns with another value is a
  409 conflict, unless ``force=true``, which takes the field over; the same value is shared.
  A field the applier applied before and no longer applies is released, and removed from
  the object when nobody else owns it.

Fields are paths of keys. Lists of objects with a ``name`` (containers, env, ports by name)
are keyed, as the API's ``patchMergeKey`` makes them (``k:{"name":"app"}``); other lists are
atomic (one field). ``status`` and the server-owned metadata (``name``, ``namespace``,
``uid``, ``resourceVersion``, ``generation``, ``creationTimestamp``, ``managedFields``) are
not tracked. Status writes by the controllers are not recorded (nothing reads them here).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

JSON = dict[str, Any]
Path = tuple[str, ...]
"""A field: ``("spec", "replicas")``, ``("spec", "template", ..., 'k:{"name":"app"}', "image")``."""

UNTRACKED_META = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
     "managedFields", "selfLink", "deletionTimestamp"}
)  # fmt: skip
APPLY = "Apply"
UPDATE = "Update"


def manager_of(query: dict[str, str], user_agent: str) -> str:
    """The field manager of a request: ``fieldManager``, else the User-Agent's first part."""
    return query.get("fieldManager") or user_agent.split("/", 1)[0] or "unknown"


def _key(item: Any) -> str | None:
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return "k:" + json.dumps({"name": item["name"]}, separators=(",", ":"))
    return None


def fields(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Each tracked leaf field of ``obj`` (an object as JSON) with its value."""
    found: dict[Path, Any] = {}
    if not prefix and isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("apiVersion", "kind", "status"):
                continue
            if key == "metadata" and isinstance(value, dict):
                meta = {k: v for k, v in value.items() if k not in UNTRACKED_META}
                found.update(fields(meta, ("metadata",)))
            else:
                found.update(fields(value, (key,)))
        return found
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            found.update(fields(value, (*prefix, str(key))))
        return found
    if isinstance(obj, list) and obj and all(_key(item) is not None for item in obj):
        for item in obj:
            key = _key(item)
            assert key is not None
            found[(*prefix, key, ".")] = True
            found.update(fields(item, (*prefix, key)))
        return found
    found[prefix] = obj
    return found


def fields_v1(paths: set[Path]) -> JSON:
    """``paths`` in the API's FieldsV1 form: ``{"f:spec": {"f:replicas": {}}}``."""
    tree: JSON = {}
    for path in sorted(paths):
        node = tree
        for step in path:
            name = step if step.startswith("k:") or step == "." else f"f:{step}"
            node = node.setdefault(name, {})
    return tree


def _paths(tree: Any, prefix: Path = ()) -> Iterator[Path]:
    if not isinstance(tree, dict) or not tree:
        yield prefix
        return
    for name, below in tree.items():
        step = name[2:] if name.startswith("f:") else name
        yield from _paths(below, (*prefix, step))


def owned(entry: JSON) -> set[Path]:
    return set(_paths(entry.get("fieldsV1") or {}))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(manager: str, operation: str, api_version: str, subresource: str) -> JSON:
    entry: JSON = {
        "manager": manager, "operation": operation, "apiVersion": api_version,
        "time": _now(), "fieldsType": "FieldsV1", "fieldsV1": {},
    }  # fmt: skip
    if subresource:
        entry["subresource"] = subresource
    return entry


def _same(entry: JSON, manager: str, operation: str, subresource: str) -> bool:
    return (entry.get("manager"), entry.get("operation"), entry.get("subresource", "")) == (
        manager,
        operation,
        subresource,
    )


def record_update(before: JSON | None, after: JSON, manager: str, subresource: str = "") -> None:
    """``after``'s managedFields once ``manager`` wrote it (an ``Update``): the fields it set
    or changed move to its entry, from everyone else's."""
    meta = after.setdefault("metadata", {})
    previous = (before or {}).get("metadata", {}).get("managedFields") or []
    entries: list[JSON] = copy.deepcopy(previous)
    old, new = fields(before or {}), fields(after)
    changed = {p for p in new if p not in old or old[p] != new[p]} | (set(old) - set(new))
    if subresource == "scale":
        changed &= {("spec", "replicas")}
    api_version = str(after.get("apiVersion") or "v1")
    _move(entries, changed, manager, UPDATE, api_version, subresource, keep=set(new))
    meta["managedFields"] = entries


def _move(
    entries: list[JSON],
    paths: set[Path],
    manager: str,
    operation: str,
    api_version: str,
    subresource: str,
    keep: set[Path],
) -> None:
    """``paths`` to the (manager, operation, subresource) entry, out of the others; a path
    not in ``keep`` (gone from the object) leaves every entry."""
    mine = next((e for e in entries if _same(e, manager, operation, subresource)), None)
    if mine is None and paths & keep:
        mine = _entry(manager, operation, api_version, subresource)
        entries.append(mine)
    for entry in entries:
        held = owned(entry) if entry.get("fieldsV1") else set()
        if entry is mine:
            held = (held | paths) & keep
        else:
            held -= paths
            held &= keep
        entry["fieldsV1"] = fields_v1(held)
        if entry is mine:
            entry["time"] = _now()
    entries[:] = [e for e in entries if e.get("fieldsV1")]


class ApplyConflict(Exception):
    """The 409 an apply gets for fields other managers own with other values."""

    def __init__(self, conflicts: list[tuple[str, str, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(self.message)

    @property
    def message(self) -> str:
        n = len(self.conflicts)
        if n == 1:
            manager, api_version, path = self.conflicts[0]
            return (
                f'Apply failed with 1 conflict: conflict with "{manager}" using {api_version}:'
                f" {dotted(path)}"
            )
        lines = "".join(
            f'\n- conflict with "{m}" using {v}: {dotted(p)}' for m, v, p in self.conflicts
        )
        return f"Apply failed with {n} conflicts:{lines}"

    @property
    def causes(self) -> list[JSON]:
        return [
            {"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}',
             "field": dotted(p)}
            for m, v, p in self.conflicts
        ]  # fmt: skip


def dotted(path: Path) -> str:
    return "".join(f"[{s[2:]}]" if s.startswith("k:") else f".{s}" for s in path if s != ".")


def apply(current: JSON | None, config: JSON, manager: str, force: bool) -> JSON:
    """The object after ``manager`` applied ``config`` to ``current`` (None: it is created),
    with its managedFields; ``ApplyConflict`` when another manager owns a field ``config``
    gives another value and ``force`` is false."""
    before = copy.deepcopy(current) if current is not None else {"metadata": {}}
    entries: list[JSON] = copy.deepcopy(before.get("metadata", {}).get("managedFields") or [])
    applied = fields(config)
    present = fields(before)
    conflicts = []
    for entry in entries:
        if _same(entry, manager, APPLY, ""):
            continue
        for path in sorted(owned(entry) & set(applied)):
            if path in present and present[path] != applied[path]:
                conflicts.append((str(entry["manager"]), str(entry.get("apiVersion")), path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    mine = next((e for e in entries if _same(e, manager, APPLY, "")), None)
    released = (owned(mine) if mine else set()) - set(applied)
    others = set().union(*(owned(e) for e in entries if e is not mine))
    result: JSON = _merged(before, config)
    for path in released - others:
        _remove(result, path)
    taken = {p for m, _, p in conflicts} if force else set()
    api_version = str(config.get("apiVersion") or "v1")
    keep = set(fields(result))
    if mine is not None:
        mine["fieldsV1"] = {}
    _move(entries, taken, manager, APPLY, api_version, "", keep)
    mine = next((e for e in entries if _same(e, manager, APPLY, "")), None)
    if mine is None:
        mine = _entry(manager, APPLY, api_version, "")
        entries.append(mine)
    mine["fieldsV1"] = fields_v1(set(applied) & keep)
    result.setdefault("metadata", {})["managedFields"] = [e for e in entries if e["fieldsV1"]]
    return result


def _merged(base: Any, config: Any) -> Any:
    """``config`` merged into ``base``: maps by key, keyed lists by name, the rest replaced."""
    if isinstance(base, dict) and isinstance(config, dict):
        out = dict(base)
        for key, value in config.items():
            out[key] = _merged(base.get(key), value)
        return out
    keyed = isinstance(config, list) and config and all(_key(i) is not None for i in config)
    if keyed and isinstance(base, list):
        by_name = {_key(i): i for i in base}
        merged = [_merged(by_name.get(_key(i)), i) for i in config]
        rest = [i for i in base if _key(i) not in {_key(c) for c in config}]
        return merged + rest
    return copy.deepcopy(config)


def _remove(obj: Any, path: Path) -> None:
    steps = [s for s in path if s != "."]
    node = obj
    for step in steps[:-1]:
        node = _child(node, step)
        if node is None:
            return
    last = steps[-1]
    if isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list) and last.startswith("k:"):
        node[:] = [i for i in node if _key(i) != last]


def _child(node: Any, step: str) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and step.startswith("k:"):
        return next((i for i in node if _key(i) == step), None)
    return None
