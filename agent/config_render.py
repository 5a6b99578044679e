"""How an app's objects are rendered: its Helm options (values files, values, release name), jsonnet options
(ext vars, TLAs, libraries), kustomize options (over whatever rendered them) and which files of its directory are
read. Part of the ``apps`` section (:mod:`agent.config_apps`); re-exported by :mod:`agent.config`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from agent.config_types import _dns_label, _Model, _relative, valid_labels


class ValuesFile(_Model):
    """A Helm values file: ``path`` in the app's source (``${CLUSTER_NAME}`` and ``${CLUSTER_LABEL_<key>}`` are
    replaced per cluster), ``optional``: a missing file is skipped instead of failing the app. With ``source``, the
    file comes from that source instead (``valuesFrom``)."""

    path: str
    optional: bool = False
    source: str | None = None

    @pydantic.field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        return _relative(v, "values file")


def _values_file(v: Any) -> Any:
    return {"path": v} if isinstance(v, str) else v


class HelmOptions(_Model):
    """How an app's chart is rendered (``helm template``; its ``path`` must hold a ``Chart.yaml``, or it names a
    ``chart``): ``releaseName`` (default: the app's name); ``valuesFiles`` from the app's source (relative to its
    root; for a ``chart``, relative to the chart, as Argo CD reads them), then ``valuesFrom`` (files of
    other sources), then ``values`` (inline), later ones winning, as ``helm template -f a -f b --values c`` merges
    them; ``skipCrds`` leaves the chart's ``crds/`` out (default false); ``skipTests`` leaves ``helm test`` hooks out
    (default true). Values files may be SOPS-encrypted (decrypted first when the app decrypts)."""

    release_name: str | None = None
    values: dict[str, Any] = pydantic.Field(default_factory=dict)
    values_files: tuple[
        Annotated[ValuesFile, pydantic.BeforeValidator(_values_file, json_schema_input_type=str | ValuesFile)], ...
    ] = ()
    values_from: tuple[ValuesFile, ...] = ()
    skip_crds: bool = False
    skip_tests: bool = True

    @pydantic.field_validator("release_name")
    @classmethod
    def _release(cls, v: str | None) -> str | None:
        return _dns_label(v) if v is not None else v

    @pydantic.field_validator("values_from")
    @classmethod
    def _with_source(cls, v: tuple[ValuesFile, ...]) -> tuple[ValuesFile, ...]:
        for f in v:
            if f.source is None:
                raise ValueError(f"valuesFrom {f.path!r} needs source (valuesFiles are read from the app's source)")
        return v


def _jsonnet_value(v: Any) -> Any:
    return {"value": v} if isinstance(v, str) else v


class JsonnetValue(_Model):
    """One jsonnet ext var or top-level argument, exactly one of: ``value`` (a string; a bare string is short for
    it), ``code`` (jsonnet code: ``3``, ``{a: 1}``), or ``env`` (the agent's environment variable of that name, read
    at each render as a string and kept out of every output, as a decrypted value is)."""

    value: str | None = None
    code: str | None = None
    env: str | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> JsonnetValue:
        given = [k for k in ("value", "code", "env") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of value, code or env (given: {', '.join(given) or 'none'})")
        return self


def _named_values(v: Any) -> Any:
    """Argo CD's list form (``[{name, value, code: true}]``) as a mapping by name."""
    if not isinstance(v, list):
        return v
    out: dict[str, Any] = {}
    for i, item in enumerate(v):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"item {i} needs a name (Argo CD's form: {{name, value, code}})")
        if set(item) - {"name", "value", "code"}:
            raise ValueError(f"item {item['name']!r}: only name, value and code are read")
        out[item["name"]] = {"code" if item.get("code") else "value": str(item.get("value", ""))}
    return out


_JsonnetValues = Annotated[
    dict[
        str,
        Annotated[JsonnetValue, pydantic.BeforeValidator(_jsonnet_value, json_schema_input_type=str | JsonnetValue)],
    ],
    pydantic.BeforeValidator(_named_values),
]


class DirectoryOptions(_Model):
    """Which files of an app's directory are read (Argo CD's ``source.directory``): ``recurse`` (default true:
    every subdirectory, as Flux reads a path; Argo CD's default is false, the files at the top only), ``include``
    and ``exclude`` (glob patterns matched against each file's path relative to the app's path: ``*.yaml``,
    ``{config.yaml,env-use2/*}``; ``*`` spans ``/``, as Argo CD's globs)."""

    recurse: bool = True
    include: str = ""
    exclude: str = ""


class KustomizeImage(_Model):
    """An image override of :class:`KustomizeOptions` (kustomize's ``images`` entry, Flux's field names): the
    image ``name`` as written in the objects, and its ``newName``, ``newTag`` or ``digest``."""

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None


def _image(text: str) -> dict[str, str]:
    """Argo CD's image override string (``kustomize edit set image`` syntax: ``[old=]new[:tag|@digest]``) as a
    :class:`KustomizeImage` mapping. Raises ValueError."""
    old, _, new = text.rpartition("=")
    new, at, digest = new.partition("@")
    slash = new.rfind("/")
    colon = new.rfind(":")
    name, tag = (new[:colon], new[colon + 1 :]) if colon > slash else (new, "")
    if not name:
        raise ValueError(f"image {text!r}: give [old=]new[:tag|@digest]")
    out = {"name": old or name}
    if old and old != name:
        out["newName"] = name
    if tag:
        out["newTag"] = tag
    if at:
        out["digest"] = digest
    return out


class KustomizeOptions(_Model):
    """What kustomize changes in an app's rendered objects, whatever rendered them (Argo CD's
    ``source.kustomize``, Flux's Kustomization fields): ``namePrefix``, ``nameSuffix``, ``images`` (Argo CD's
    strings ``[old=]new[:tag|@digest]`` or Flux's ``{name, newName, newTag, digest}``), ``patches`` (kustomize's
    ``patches`` entries: ``{patch, target}``, strategic merge or JSON 6902), ``commonLabels`` (selectors
    included, as kustomize's ``commonLabels``) and ``commonAnnotations``. Applied by the real ``kustomize
    build`` over the rendered objects (:mod:`agent.sources.overlay`)."""

    name_prefix: str = ""
    name_suffix: str = ""
    images: tuple[KustomizeImage | str, ...] = ()
    patches: tuple[dict[str, Any], ...] = ()
    common_labels: dict[str, str] = pydantic.Field(default_factory=dict)
    common_annotations: dict[str, str] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("images")
    @classmethod
    def _images(cls, v: tuple[KustomizeImage | str, ...]) -> tuple[KustomizeImage | str, ...]:
        return tuple(KustomizeImage.model_validate(_image(i)) if isinstance(i, str) else i for i in v)

    def image_overrides(self) -> list[dict[str, str]]:
        """``images`` as kustomize's ``images`` entries (``name``, ``newName``, ``newTag``, ``digest``)."""
        return [
            _image(i) if isinstance(i, str) else i.model_dump(by_alias=True, exclude_none=True) for i in self.images
        ]

    @pydantic.field_validator("patches")
    @classmethod
    def _patch(cls, v: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for i, p in enumerate(v):
            if not isinstance(p.get("patch"), str) or set(p) - {"patch", "target", "options"}:
                raise ValueError(f"patches[{i}]: give patch (a string) and optionally target")
        return v

    @pydantic.field_validator("common_labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return valid_labels(v)


class JsonnetOptions(_Model):
    """How an app's ``*.jsonnet`` files render (Argo CD's ``directory.jsonnet``): ``extVars`` (``std.extVar``)
    and ``tlas`` (the top-level function's arguments), each a mapping of name to :class:`JsonnetValue` (Argo CD's
    list of ``{name, value, code}`` is read too); ``libs``: directories of the source (relative to its root)
    searched for imports after the importing file's own directory."""

    ext_vars: _JsonnetValues = pydantic.Field(default_factory=dict)
    tlas: _JsonnetValues = pydantic.Field(default_factory=dict)
    libs: tuple[str, ...] = ()

    @pydantic.field_validator("libs")
    @classmethod
    def _relative_libs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(p, "jsonnet libs") for p in v)


class VariablesFrom(_Model):
    """A ConfigMap or Secret of the target cluster whose keys are variables of an app's ``${NAME}`` substitution
    (Flux's ``postBuild.substituteFrom``): ``kind`` (``ConfigMap`` or ``Secret``), ``name``, ``namespace``
    (default: the app's namespace, else the cluster's), ``optional`` (a missing one is skipped; otherwise the app
    fails naming it). A Secret's values are masked (``***``) in every output, like decrypted ones."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    namespace: str | None = None
    optional: bool = False
