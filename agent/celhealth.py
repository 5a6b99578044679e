"""Health rules for any kind from the config (``healthChecks``): CEL expressions in Flux's form, or the kstatus
preset, turned into :class:`reconcilers.health.Rules` for the live cache and the health waits.

A rule has up to three CEL expressions over the live object, evaluated in order, the first true wins:
``current`` (Healthy), ``inProgress`` (Progressing), ``failed`` (Degraded); none true is Progressing (Flux 2.5
"health check expressions": the object's top-level fields, ``apiVersion``, ``kind``, ``metadata``, ``spec``,
``status`` and the rest, are the expressions' variables; an absent ``metadata``, ``spec`` or ``status`` is an empty
map). An expression that errors at run time (a missing field) makes the object Unknown with CEL's message. A rule
for ``kind: "*"`` applies to custom resources without a rule of their own (see
:func:`reconcilers.health.custom_group`). Expressions are compiled once, with the maintained CEL implementation
``common-expression-language`` (Rust's cel-interpreter), and a syntax error is a config error naming the rule and
the position (:func:`compile_expression`, called when the config is loaded). Used by ``agent.config`` and
``agent.sync.cluster``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from reconcilers import health, resources

_MAPS = ("metadata", "spec", "status")
"""Top-level fields that are an empty map when the object has none (a new object has no status yet)."""
_VERDICTS = (
    ("current", health.Health.HEALTHY),
    ("inProgress", health.Health.PROGRESSING),
    ("failed", health.Health.DEGRADED),
)


class HealthCheckSpec(Protocol):
    """What a configured health check gives (``agent.config.HealthCheck``)."""

    @property
    def api_version(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def current(self) -> str | None: ...
    @property
    def in_progress(self) -> str | None: ...
    @property
    def failed(self) -> str | None: ...
    @property
    def preset(self) -> str | None: ...


def compile_expression(expression: str, where: str) -> Any:
    """The compiled CEL program of ``expression``. Raises ValueError naming ``where`` and CEL's position."""
    # Imported when a rule is compiled: the package's __init__ loads its CLI and prompt_toolkit (0.14 s), which a
    # config without CEL rules, and every one-shot command, would pay at start.
    import cel

    try:
        return cel.compile(expression)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


class CelRule:
    """One configured rule: its compiled expressions, evaluated in order."""

    def __init__(self, spec: HealthCheckSpec, where: str) -> None:
        self.programs = [
            (name, verdict, compile_expression(text, f"{where}.{name}"), text)
            for name, verdict in _VERDICTS
            if (text := getattr(spec, "in_progress" if name == "inProgress" else name))
        ]
        # Only the top-level fields the expressions name are handed to CEL: converting a whole object (its
        # managedFields above all) on every watch event would cost more than evaluating the rule.
        self.fields = frozenset(v for _, _, program, _ in self.programs for v in program.variables())

    def __call__(self, obj: resources.Body) -> health.HealthStatus:
        variables = {f: obj.get(f) or {} if f in _MAPS else obj.get(f) for f in self.fields if f in obj or f in _MAPS}
        for name, verdict, program, text in self.programs:
            try:
                value = program.execute(variables)
            except Exception as e:  # the library raises KeyError, RuntimeError, ...: any error means Unknown
                why = f"no such key: {e}" if isinstance(e, KeyError) else str(e)
                return health.HealthStatus(health.Health.UNKNOWN, f"health rule {name} ({text}): {why}")
            if value is True:
                return health.HealthStatus(verdict, f"{name}: {text}")
        return health.HealthStatus(health.Health.PROGRESSING, "no expression of its health rule is true yet")


def rules(checks: Sequence[HealthCheckSpec]) -> health.Rules:
    """The rules in force for ``checks`` (later checks of one kind win), on top of the built-in ones."""
    configured: dict[tuple[str, str], health.Rule] = {}
    wildcard: health.Rule | None = None
    for i, check in enumerate(checks):
        rule: health.Rule = health.kstatus if check.preset == "kstatus" else CelRule(check, f"healthChecks[{i}]")
        if check.kind == "*":
            wildcard = rule
        else:
            group = (check.api_version or "").rpartition("/")[0] if "/" in (check.api_version or "") else ""
            configured[(group, check.kind)] = rule
    return health.Rules(configured, wildcard)
