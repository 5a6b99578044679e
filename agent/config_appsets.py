"""The ``appSets`` section of the config file: generated apps, after Argo CD's ApplicationSet.

An app set is a name, one or more generators and an app template. Each generator yields parameter sets; each set
renders the template (an entry of ``apps[]`` whose strings may hold templates) into an app. The generators and
their parameter names are Argo CD's (operator-manual/applicationset: Generators-List, Generators-Cluster,
Generators-Git, Generators-Matrix, Generators-Merge), so an ApplicationSet's generators and template strings carry
over; a ``git`` generator reads a source of this config by name (``source``) instead of a ``repoURL``. Re-exported
by :mod:`agent.config`; expanded into apps by :mod:`agent.appsets`.
"""

from __future__ import annotations

from typing import Any

import pydantic

from agent.config_apps import AppConfig, Placement
from agent.config_types import Interval, SecretRef, _dns_label, _Model, _relative


class ListGenerator(_Model):
    """``list``: literal parameter sets, ``elements`` (mappings), or ``elementsYaml``, a YAML list as a string
    (templated with the parameters of an outer matrix generator first, as Argo CD does)."""

    elements: tuple[dict[str, Any], ...] = ()
    elements_yaml: str | None = None


class ClusterGenerator(_Model):
    """``clusters``: one parameter set per registered cluster its ``selector`` selects (a
    :class:`agent.config_apps.Placement`: ``matchLabels``, ``matchExpressions``, ``names``; empty: every cluster).
    Parameters: ``name``, ``nameNormalized``, ``server``, ``metadata.labels.<key>``, ``metadata.annotations``
    (always empty here) and ``values.<key>`` from ``values``, whose strings are templated with the cluster's own
    parameters."""

    selector: Placement = Placement()
    values: dict[str, str] = pydantic.Field(default_factory=dict)


class PathPattern(_Model):
    """A ``git`` generator's ``directories`` or ``files`` entry: ``path``, a glob relative to the source's root,
    and ``exclude`` (true: what it matches is left out, whatever else matches it)."""

    path: str
    exclude: bool = False

    @pydantic.field_validator("path")
    @classmethod
    def _relative_path(cls, v: str) -> str:
        return _relative(v, "path")


class GitGenerator(_Model):
    """``git``: read the source named ``source`` (default ``default``) at its fetched revision, no clone of its
    own. ``directories``: one parameter set per directory a pattern matches (``*``, ``?`` and ``[...]`` within one
    path segment, as Go's ``path.Match``); ``files``: one per JSON or YAML file a pattern matches (``**`` spans
    directories: Argo CD's newer file globbing), with every field of the file (a file holding a list: one set per
    item). ``pathParamPrefix`` puts the ``path`` parameters under that name (two git generators in a matrix);
    ``values``: extra parameters, templated with the set's own."""

    source: str = "default"
    directories: tuple[PathPattern, ...] = ()
    files: tuple[PathPattern, ...] = ()
    path_param_prefix: str = ""
    values: dict[str, str] = pydantic.Field(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> GitGenerator:
        if bool(self.directories) == bool(self.files):
            raise ValueError("give directories or files")
        if not any(not p.exclude for p in (*self.directories, *self.files)):
            raise ValueError("every pattern is an exclude: give at least one path to include")
        return self


class GitHubPullRequests(_Model):
    """Open pull requests of GitHub repository ``owner``/``repo`` (``GET /repos/{owner}/{repo}/pulls``) at
    ``api`` (GitHub Enterprise: its API URL), read with ``token`` (env or file; without one, anonymously), kept
    when they carry every one of ``labels``."""

    owner: str
    repo: str
    api: str = "https://api.github.com"
    token: SecretRef | None = None
    labels: tuple[str, ...] = ()


class GitLabMergeRequests(_Model):
    """Merge requests of GitLab project ``project`` (its ID or ``group/name``; ``GET
    /projects/:id/merge_requests``) at ``api``, in state ``pullRequestState`` (default ``opened``), read with
    ``token`` (``PRIVATE-TOKEN``), with every one of ``labels``."""

    project: str
    api: str = "https://gitlab.com"
    token: SecretRef | None = None
    labels: tuple[str, ...] = ()
    pull_request_state: str = "opened"


class Preview(_Model):
    """A pull request generator's ``preview``: for each open pull request, what merging its head would change
    across the fleet (a server-side dry run of every app on every cluster with source ``source`` at the head
    commit, nothing written), posted as one ``comment`` on the pull request (GitHub issue comment, GitLab merge
    request note; edited in place on each push) and as a ``commitStatus`` ``gitops-agent/preview`` on the head
    commit (failure when any app would fail to render, validate or apply). ``source``: the source the repository
    is fetched as (default ``default``); ``link``: the ``target_url`` of the commit status (the dashboard, say)."""

    comment: bool = False
    commit_status: bool = False
    source: str = "default"
    link: str | None = None


class PullRequestGenerator(_Model):
    """``pullRequest``: one parameter set per open pull request of ``github`` or ``gitlab`` (Argo CD's
    Generators-Pull-Request.md): ``number``, ``title``, ``branch``, ``branch_slug``, ``target_branch``,
    ``target_branch_slug``, ``head_sha``, ``head_short_sha`` (8 characters), ``head_short_sha_7``, ``author`` and,
    for Go templates, ``labels``. Listed again every ``requeueAfterSeconds`` (Argo CD's name; ``interval`` too;
    default 30 minutes) and at once on a pull request webhook; an app's ``ref`` may be ``{{.head_sha}}``.
    ``preview``: a :class:`Preview` of each pull request's changes, posted on it."""

    github: GitHubPullRequests | None = None
    gitlab: GitLabMergeRequests | None = None
    requeue_after_seconds: Interval = pydantic.Field(
        default=1800.0, validation_alias=pydantic.AliasChoices("requeueAfterSeconds", "interval")
    )
    preview: Preview | None = None

    @pydantic.model_validator(mode="after")
    def _one_provider(self) -> PullRequestGenerator:
        if (self.github is None) == (self.gitlab is None):
            raise ValueError("give github or gitlab")
        return self

    @property
    def key(self) -> str:
        """Names the list this generator reads (provider, API, repository, labels, state): generators with one key
        share one list."""
        if self.github is not None:
            g = self.github
            return f"github {g.api.rstrip('/')} {g.owner}/{g.repo} labels={','.join(sorted(g.labels))}"
        assert self.gitlab is not None
        m = self.gitlab
        labels = ",".join(sorted(m.labels))
        return f"gitlab {m.api.rstrip('/')} {m.project} labels={labels} state={m.pull_request_state}"


class MatrixGenerator(_Model):
    """``matrix``: the cartesian product of two ``generators``; the second's strings are templated with each
    parameter set of the first (``files: [{path: "{{.path.path}}/config.json"}]``)."""

    generators: tuple[Generator, ...] = pydantic.Field(min_length=2, max_length=2)


class MergeGenerator(_Model):
    """``merge``: the first of ``generators`` is the base; a parameter set of a later one whose ``mergeKeys``
    values equal a base set's replaces those of its parameters it has (Argo CD: sets that match no base set are
    dropped)."""

    merge_keys: tuple[str, ...] = pydantic.Field(min_length=1)
    generators: tuple[Generator, ...] = pydantic.Field(min_length=2)


class Generator(_Model):
    """One generator: exactly one of ``list``, ``clusters``, ``git``, ``pullRequest``, ``matrix``, ``merge``."""

    list_: ListGenerator | None = pydantic.Field(default=None, alias="list")
    clusters: ClusterGenerator | None = None
    git: GitGenerator | None = None
    pull_request: PullRequestGenerator | None = None
    matrix: MatrixGenerator | None = None
    merge: MergeGenerator | None = None

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> Generator:
        given = [k for k in KINDS if self.of(k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (given: {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        """Which generator this is (one of :data:`KINDS`)."""
        return next(k for k in KINDS if self.of(k) is not None)

    def of(self, kind: str) -> _Model | None:
        """The settings of the generator ``kind`` (one of :data:`KINDS`), None when this is another kind."""
        found: _Model | None = getattr(self, _FIELDS.get(kind, kind))
        return found

    def pull_requests(self) -> list[PullRequestGenerator]:
        """The pull request generators under this one (config order)."""
        if self.pull_request is not None:
            return [self.pull_request]
        inner = self.matrix.generators if self.matrix else self.merge.generators if self.merge else ()
        return [p for g in inner for p in g.pull_requests()]

    def sources(self) -> list[str]:
        """The sources the git generators under this one read (config order)."""
        if self.git is not None:
            return [self.git.source]
        inner = self.matrix.generators if self.matrix else self.merge.generators if self.merge else ()
        return [s for g in inner for s in g.sources()]


KINDS = ("list", "clusters", "git", "pullRequest", "matrix", "merge")
"""The generator kinds, Argo CD's names."""
_FIELDS = {"list": "list_", "pullRequest": "pull_request"}

_TEMPLATE_KEYS = frozenset(f.alias or name for name, f in AppConfig.model_fields.items())


class AppSetConfig(_Model):
    """One app set: ``name`` (a DNS label, unique); ``generators`` (:class:`Generator`, their parameter sets
    concatenated); ``template``: an app as under ``apps`` (every key of it), whose strings and mapping keys are
    templates; ``goTemplate``: Go's text/template with Sprig (``{{.path.basename}}``) instead of fasttemplate
    (``{{path.basename}}``), ``goTemplateOptions`` (``missingkey=error``); ``preserveResourcesOnDeletion``: the
    objects of an app that stops being generated are kept even with ``sync.prune`` on (Argo CD's field)."""

    name: str
    generators: tuple[Generator, ...] = pydantic.Field(min_length=1)
    template: dict[str, Any]
    go_template: bool = False
    go_template_options: tuple[str, ...] = ()
    preserve_resources_on_deletion: bool = False

    @pydantic.field_validator("name")
    @classmethod
    def _name_label(cls, v: str) -> str:
        return _dns_label(v)

    @pydantic.field_validator("template")
    @classmethod
    def _app_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(k for k in v if k not in _TEMPLATE_KEYS)
        if unknown:
            raise ValueError(f"template: unknown app keys {', '.join(unknown)} (an app's keys: see apps[])")
        if "name" not in v:
            raise ValueError("template needs name (each generated app's name, a template such as '{{.name}}')")
        return v

    @pydantic.field_validator("go_template_options")
    @classmethod
    def _options(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = ("missingkey=default", "missingkey=invalid", "missingkey=zero", "missingkey=error")
        for o in v:
            if o not in known:
                raise ValueError(f"goTemplateOptions: {o!r} is not one of {', '.join(known)}")
        return v

    def sources(self) -> list[str]:
        """The sources its git generators read (config order, no repeats)."""
        return list(dict.fromkeys(s for g in self.generators for s in g.sources()))

    def pull_requests(self) -> list[PullRequestGenerator]:
        """Its pull request generators (config order)."""
        return [p for g in self.generators for p in g.pull_requests()]


MatrixGenerator.model_rebuild()
Generator.model_rebuild()
MergeGenerator.model_rebuild()
