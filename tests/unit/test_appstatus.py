"""The apps x clusters cells of a status poll: kept while nothing they are made of changes, made again when
anything does (the last sync, the config, a source's revision or staleness, a live object)."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from agent import config
from agent.runtime import appquery, appstatus, state
from agent.sync import drift, holds
from reconcilers import apply, engine, health, resources

KEY = resources.ResourceKey("", "ConfigMap", "ns", "cm")
REV = resources.Revision("a" * 40, "main")


class View:
    """What the cells read of a fleet, without clusters: a config, the state, the sources' revisions."""

    def __init__(self, cfg: config.AgentConfig) -> None:
        self.cfg = cfg
        self.state = state.AgentState([c.name for c in cfg.clusters])
        self.state.set_sources(["default"])
        self.targets = {"default": REV}
        self.book = holds.Book()

    def worker_of(self, name: str) -> None:
        return None

    def revisions_for(self, cluster: str) -> dict[str, resources.Revision]:
        return dict(self.targets)


def load(tmp_path: pathlib.Path) -> config.AgentConfig:
    doc: dict[str, Any] = {
        "source": {"url": str(tmp_path), "ref": "main"},
        "clusters": [{"name": "c1", "kubeconfig": str(tmp_path / "kubeconfig"), "labels": {"env": "dev"}}],
        "apps": [{"name": "web", "path": "web"}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return config.load_config(path)


def synced() -> engine.ReconcileResult:
    now = datetime.datetime.now(datetime.UTC)
    desired = {KEY: object()}
    app = engine.ReconcileResult(
        "c1", REV, (apply.ChangeSetEntry(KEY, apply.Action.UNCHANGED),), now, 0.1, desired=desired, app="web"
    )  # type: ignore[arg-type]
    return engine.ReconcileResult("c1", REV, app.entries, now, 0.1, desired=desired, apps=(app,))  # type: ignore[arg-type]


def cells(view: View, last: engine.ReconcileResult, status: health.Health, changes: int) -> list[dict[str, Any]]:
    healths = {KEY: health.HealthStatus(status, "")}
    return appstatus.cluster_cells(view, "c1", last, healths, compact=True, live_changes=changes)  # type: ignore[arg-type]


def test_cells_are_kept_while_nothing_changes_and_made_again_when_anything_does(tmp_path: pathlib.Path) -> None:
    view = View(load(tmp_path))
    last = synced()
    first = cells(view, last, health.Health.HEALTHY, 7)
    assert [(c["app"], c["syncStatus"], c["health"]) for c in first] == [("web", "Synced", "Healthy")]
    assert cells(view, last, health.Health.HEALTHY, 7) is first  # nothing changed: the same cells
    # a live object changed (the cache's count moved): its health is read again
    degraded = cells(view, last, health.Health.DEGRADED, 8)
    assert degraded[0]["health"] == "Degraded"
    # the source moved on: the app is behind it
    view.targets = {"default": resources.Revision("b" * 40, "main")}
    assert cells(view, last, health.Health.DEGRADED, 8)[0]["syncStatus"] == "OutOfSync"
    # its source is stale
    view.state.record_fetch(None, "unreachable")
    assert cells(view, last, health.Health.DEGRADED, 8)[0]["stale"] == "unreachable"
    # a new sync
    newer = synced()
    view.targets = {"default": REV}
    assert cells(view, newer, health.Health.DEGRADED, 8)[0]["syncStatus"] == "Synced"
    # a config reloaded (a new config object): made again
    before = cells(view, newer, health.Health.DEGRADED, 8)
    assert cells(view, newer, health.Health.DEGRADED, 8) is before
    view.cfg = load(tmp_path)
    assert cells(view, newer, health.Health.DEGRADED, 8) is not before
    # without a change count (no live cache) nothing is kept
    healths = {KEY: health.HealthStatus(health.Health.HEALTHY, "")}
    one = appstatus.cluster_cells(view, "c1", newer, healths, compact=True)  # type: ignore[arg-type]
    assert appstatus.cluster_cells(view, "c1", newer, healths, compact=True) is not one  # type: ignore[arg-type]


def test_the_apps_summary_follows_new_cells(tmp_path: pathlib.Path) -> None:
    view = View(load(tmp_path))
    last = synced()
    healthy = cells(view, last, health.Health.HEALTHY, 1)
    summary = appstatus.summary(view.cfg, [healthy])
    assert appstatus.summary(view.cfg, [healthy]) is summary
    assert summary == [{"name": "web", "clusters": 1, "syncStatus": {"Synced": 1}, "health": {"Healthy": 1}}]
    degraded = cells(view, last, health.Health.DEGRADED, 2)
    assert appstatus.summary(view.cfg, [degraded])[0]["health"] == {"Degraded": 1}


def _entry(name: str, app_set: str | None, *cells: tuple[str, str, str], **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "appSet": app_set,
        "labels": labels,
        "clusters": [{"cluster": c, "syncStatus": s, "health": h} for c, s, h in cells],
    }


def test_apps_are_filtered_and_paged() -> None:
    found = [
        _entry("web", "teams", ("a", "Synced", "Healthy"), ("b", "OutOfSync", "Degraded"), team="shop", tier="web"),
        _entry("api", "teams", ("a", "Synced", "Healthy"), team="shop"),
        _entry("db", None, ("b", "Synced", "Progressing")),
        _entry("web-canary", None, ("a", "OutOfSync", "Healthy")),
    ]

    def names(query: appquery.AppQuery) -> tuple[list[str], int, str | None]:
        shown, total, more = appquery.page(found, query)
        return [a["name"] for a in shown], total, more

    assert names(appquery.AppQuery()) == (["web", "api", "db", "web-canary"], 4, None)
    assert names(appquery.AppQuery(sync="outofsync")) == (["web", "web-canary"], 2, None)
    assert names(appquery.AppQuery(health="Degraded", cluster="b")) == (["web"], 1, None)
    assert names(appquery.AppQuery(app_set="teams")) == (["web", "api"], 2, None)
    assert names(appquery.AppQuery(q="WEB")) == (["web", "web-canary"], 2, None)
    assert names(appquery.AppQuery(limit=3)) == (["web", "api", "db"], 4, "db")
    assert names(appquery.AppQuery(limit=3, after="db")) == (["web-canary"], 4, None)
    assert names(appquery.AppQuery(limit=2, after="web", q="web")) == (["web-canary"], 2, None)
    by_label = lambda text: names(appquery.AppQuery(label=config.parse_selector(text)))  # noqa: E731
    assert by_label("team=shop") == (["web", "api"], 2, None)
    assert by_label("team==shop,!tier") == (["api"], 1, None)
    assert by_label("team!=shop") == (["db", "web-canary"], 2, None)  # NotIn: a missing key matches
    assert by_label("tier in (web,db),team") == (["web"], 1, None)
    assert by_label("team notin (shop)") == (["db", "web-canary"], 2, None)
    with pytest.raises(appquery.ExpiredContinueError, match="'gone': no such app any more"):
        appquery.page(found, appquery.AppQuery(limit=2, after="gone"))


@pytest.mark.parametrize("text", ["team in ()", "=shop", "team shop", "tier in (web", "a,,b"])
def test_a_label_selector_that_cannot_be_read_is_refused_naming_the_part(text: str) -> None:
    with pytest.raises(ValueError, match="label selector"):
        config.parse_selector(text)


def test_app_labels_follow_the_kubernetes_rules() -> None:
    ok = {"team": "shop", "example.com/tier": "web-1", "empty": ""}
    assert config.AppConfig.model_validate({"name": "a", "path": "a", "labels": ok}).labels == ok
    for bad, says in [({"-x": "a"}, "label key '-x'"), ({"Team/x": "a"}, "invalid prefix"), ({"t": "a b"}, "value")]:
        with pytest.raises(pydantic.ValidationError, match=says):
            config.AppConfig.model_validate({"name": "a", "path": "a", "labels": bad})


def test_an_app_on_a_cluster_that_cannot_be_reached_shows_unknown_with_the_reason(tmp_path: pathlib.Path) -> None:
    """A cluster that failed as a whole (no app ran) keeps a cell per placed app: Unknown, saying why (not gone
    from the matrix, as if the app were not placed there)."""
    view = View(load(tmp_path))
    now = datetime.datetime.now(datetime.UTC)
    down = engine.ReconcileResult(
        "c1", REV, (), now, 0.1, error="https://10.0.0.1: connection refused", error_kind=engine.ErrorKind.CLUSTER
    )
    (found,) = cells(view, down, health.Health.HEALTHY, 1)
    assert (found["app"], found["syncStatus"], found["health"]) == ("web", "Unknown", "Unknown")
    assert found["syncStatusReason"] == "https://10.0.0.1: connection refused"
    view.state.record(down)
    (app,) = appstatus.apps_json(view, compact=True)  # type: ignore[arg-type]
    assert app["summary"]["syncStatus"] == {"Unknown": 1}


class _Retries:
    version = 0

    def snapshot(self) -> dict[str, Any]:
        return {}


class _Watched:
    """A worker's view as the cells read it: the live cache's change count, healths, no drift."""

    def __init__(self) -> None:
        self.changes = 1
        self.drift = drift.EMPTY
        self.fighting: list[Any] = []

    def health(self, keys: Any) -> dict[resources.ResourceKey, health.HealthStatus]:
        return {k: health.HealthStatus(health.Health.HEALTHY, "") for k in keys}


class _Worker:
    def __init__(self) -> None:
        self.retries = _Retries()
        self.watched = _Watched()

    def view(self) -> _Watched:
        return self.watched


def test_every_app_is_listed_again_from_what_was_built_while_nothing_changed(tmp_path: pathlib.Path) -> None:
    """``GET /api/v1/apps`` of a fleet at rest builds no cell and no summary again (a page of 10,000 apps is then
    a filter of a list already made); a new sync, a live change or a new config builds them again."""
    worker = _Worker()

    class Watching(View):
        def worker_of(self, name: str) -> _Worker:  # type: ignore[override]
            return worker

    view = Watching(load(tmp_path))
    view.state.record(synced())
    first = appstatus.apps_json(view, compact=True)  # type: ignore[arg-type]
    assert [(a["name"], a["summary"]["syncStatus"]) for a in first] == [("web", {"Synced": 1})]
    assert appstatus.apps_json(view, compact=True) is first  # type: ignore[arg-type]
    worker.watched.changes = 2  # something changed live
    second = appstatus.apps_json(view, compact=True)  # type: ignore[arg-type]
    assert second is not first
    assert second == first
    view.state.record(synced())  # a new sync
    assert appstatus.apps_json(view, compact=True) is not second  # type: ignore[arg-type]
