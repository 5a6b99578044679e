"""What an import did with each field it read: the findings of one ``gitops-agent import``.

Every finding names where it comes from (``file: document N (Kind namespace/name)``) and the field (a dotted
path into the document, as ``spec.source.helm.valueFiles[0]``). Three kinds:

- ``mapped``: the field became the config key named;
- ``not mapped``: the field has no equivalent here, with why (the import then exits 1: nothing is dropped
  silently);
- ``provide``: a credential the definitions hold (or point at) that the written config names as a reference
  (``{env: NAME}``, a file path) instead of its value: the operator must provide it. Values never appear in a
  finding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Kind = Literal["mapped", "not mapped", "provide", "note"]


@dataclasses.dataclass(frozen=True)
class Where:
    """One document of the input: its ``file`` (as given), ``index`` (0-based within the file; a ``kind: List``
    item as ``"<n>.items[<i>]"``) and the object's ``kind``, ``namespace`` and ``name``."""

    file: str
    index: str
    kind: str = ""
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        obj = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.file}: document {self.index} ({self.kind} {obj})".replace(" )", ")")


@dataclasses.dataclass(frozen=True)
class Finding:
    """What became of one ``field`` of the document at ``where``: ``kind`` and ``detail`` (the config key it
    became, why it could not be mapped, or what to provide)."""

    where: Where
    field: str
    kind: Kind
    detail: str

    def line(self) -> str:
        """The finding as one line of the report."""
        field = f" {self.field}" if self.field else ""
        return f"{self.kind:<10} {self.where}{field}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        """The finding as JSON: file, document, kind, name, field, result, detail."""
        w = self.where
        return {
            "file": w.file,
            "document": w.index,
            "kind": w.kind,
            "namespace": w.namespace,
            "name": w.name,
            "field": self.field,
            "result": self.kind,
            "detail": self.detail,
        }


class Report:
    """The findings of one import, in the order they were made. Not thread-safe (one import, one thread)."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def mapped(self, where: Where, field: str, to: str) -> None:
        """``field`` of ``where`` became ``to`` (a config key path, with its value where that helps)."""
        self._add(Finding(where, field, "mapped", to))

    def unmapped(self, where: Where, field: str, why: str) -> None:
        """``field`` of ``where`` could not be mapped, because ``why``."""
        self._add(Finding(where, field, "not mapped", why))

    def provide(self, where: Where, field: str, what: str) -> None:
        """The credential at ``field`` of ``where`` was not written; ``what`` says how to provide it."""
        self._add(Finding(where, field, "provide", what))

    def note(self, where: Where, field: str, text: str) -> None:
        """A remark that changes nothing in the config (a field with no effect here, and why)."""
        self._add(Finding(where, field, "note", text))

    def _add(self, finding: Finding) -> None:
        if finding not in self.findings:  # an AppProject read for each of its apps says a thing once
            self.findings.append(finding)

    @property
    def failed(self) -> bool:
        """True when some field could not be mapped (the import exits 1)."""
        return any(f.kind == "not mapped" for f in self.findings)

    def lines(self) -> list[str]:
        """The report, one line per finding, then a count of each kind."""
        counts = {k: sum(f.kind == k for f in self.findings) for k in ("mapped", "not mapped", "provide", "note")}
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        return [f.line() for f in self.findings] + [summary]
