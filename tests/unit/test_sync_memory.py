"""The sync wing's memory is keyed by content: no identity comparison decides whether an input changed.

What a sync remembers for the next one (agent.sync.memory) is reused when what it depends on is equal by content
(agent.sync.keys). These tests read the wing's source and hold it to that: every ``is`` / ``is not`` in agent/sync
compares with None, a bool, an enum member or sentinel, or the current thread, or is the identity shortcut of
keys.same.
"""

from __future__ import annotations

import ast
import pathlib

import agent.sync
from agent.sync import keys, memory

SYNC = pathlib.Path(agent.sync.__file__).parent

# (module, the comparison as ast.unparse writes it): identity that is not about whether an input changed
ALLOWED = {
    ("keys.py", "a is b"),  # keys.same: equal by content, an object being equal to itself at once
    ("healthwait.py", "h.status is worst"),  # two members of the Health enum
    ("keyqueue.py", "self._thread is not threading.current_thread()"),  # is this the queue's own thread?
}


def _identity_comparisons(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot):
                text = ast.unparse(ast.Compare(left, [op], [right]))
                if not _plainly_fine(right) and (path.name, text) not in ALLOWED:
                    found.append(f"{path.name}:{node.lineno}: {text}")
            left = right
    return found


def _plainly_fine(right: ast.expr) -> bool:
    """None, True, False, an enum member or a module's sentinel: a name in capitals (``engine.ErrorKind.CANCELLED``,
    ``SyncKind.REQUESTED``, ``apps.NOT_REACHED``)."""
    if isinstance(right, ast.Constant):
        return right.value is None or isinstance(right.value, bool)
    return isinstance(right, ast.Attribute) and right.attr.isupper()


def test_no_identity_comparison_in_the_sync_wing_decides_whether_something_changed() -> None:
    found = [f for path in sorted(SYNC.glob("*.py")) for f in _identity_comparisons(path)]
    assert found == []


def test_the_scan_finds_an_identity_comparison() -> None:
    bad = SYNC.parent.parent / "build" / "scan-probe.py"
    bad.parent.mkdir(exist_ok=True)
    bad.write_text("def f(a, b):\n    return a.manifests is not b.manifests\n")
    try:
        assert _identity_comparisons(bad) == ["scan-probe.py:2: a.manifests is not b.manifests"]
    finally:
        bad.unlink()


def test_a_load_is_kept_with_its_digest_and_forgotten_with_its_app() -> None:
    kept = memory.SyncMemory("config")
    assert kept.digest("a") == ""
    loaded = memory.Loaded(object(), None, [], keys.manifests_digest([]))  # type: ignore[arg-type]
    kept.keep_load("a", loaded)
    kept.keep_load("b", loaded)
    assert kept.digest("a") == keys.manifests_digest([])
    kept.forget_except(["b"])
    assert kept.loaded("a") is None
    assert kept.loaded("b") is loaded


def test_inventory_versions_are_the_content_key_of_the_watched_inventories() -> None:
    one = {"app:a": {"metadata": {"uid": "u", "resourceVersion": "1"}}}
    assert keys.inventory_versions(one) == (("app:a", "u", "1"),)
    assert keys.inventory_versions({**one}) == keys.inventory_versions(one)
    assert keys.inventory_versions({"app:a": {"metadata": {"uid": "u", "resourceVersion": "2"}}}) != (
        keys.inventory_versions(one)
    )
