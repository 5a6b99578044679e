"""The config file before validation: its relative paths resolved against the file's directory
(:func:`resolve_paths`), and pydantic's errors said in the config file's words (:func:`describe`). Used by
:func:`agent.config.load_config`.
"""

from __future__ import annotations

import pathlib
from typing import Any

_TYPE_WORDS = {
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "dict_type": "a mapping (key: value)",
    "list_type": "a list",
    "tuple_type": "a list",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
}
"""pydantic's type errors in the config's words: its own messages name Python classes ("a valid dictionary or
instance of Placement")."""


def describe(err: Any) -> str:
    """One error of a ``pydantic.ValidationError`` (an item of ``.errors()``) as ``where.in[0].it: what``, in
    the words the config file's errors use."""
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "greater_than_equal" and "interval" in str(err["loc"][-1]).lower():
        msg = f"must be at least {err['ctx']['ge']:g}s (a shorter interval keeps servers busy for nothing)"
    elif err["type"] in _TYPE_WORDS:
        given = err.get("input")
        shown = "null" if given is None else type(given).__name__.replace("dict", "mapping").replace("str", "string")
        msg = f"should be {_TYPE_WORDS[err['type']]}, not {shown}"
    return f"{loc or '(top level)'}: {msg}"


def resolve_paths(raw: dict[str, Any], base: pathlib.Path) -> dict[str, Any]:
    """``raw`` (the config file's mapping) with its relative local paths resolved against ``base`` (the file's
    directory): a source's ``url`` (a local path), ``cacheDir``, ``sshKeyFile`` and ``passwordFile``, a cluster's
    and the home cluster's ``kubeconfig``, ``server.tls``'s files and ``server.oidc.caFile``. URLs and scp-style
    remotes are left as they are."""

    def resolve(v: Any) -> Any:
        if not isinstance(v, str) or not v or "://" in v or (":" in v and "@" in v):
            return v  # not a local path (URL or scp-style git remote): leave it to validation
        return str(base / pathlib.Path(v).expanduser())

    def resolve_source(src: Any) -> Any:
        if not isinstance(src, dict):
            return src
        return {k: resolve(v) if k in ("url", "cacheDir", "sshKeyFile", "passwordFile") else v for k, v in src.items()}

    out = dict(raw)
    if "source" in raw:
        out["source"] = resolve_source(raw["source"])
    if isinstance(raw.get("sources"), dict):
        out["sources"] = {name: resolve_source(s) for name, s in raw["sources"].items()}
    sharding = raw.get("sharding")
    if isinstance(sharding, dict) and isinstance(sharding.get("homeCluster"), dict):
        home = sharding["homeCluster"]
        if home.get("kubeconfig"):
            out["sharding"] = {**sharding, "homeCluster": {**home, "kubeconfig": resolve(home["kubeconfig"])}}
    server = raw.get("server")
    if isinstance(server, dict) and isinstance(server.get("tls"), dict):
        tls = {k: resolve(v) if k in ("certFile", "keyFile") else v for k, v in server["tls"].items()}
        out["server"] = server = {**server, "tls": tls}
    if isinstance(server, dict) and isinstance(server.get("oidc"), dict) and server["oidc"].get("caFile"):
        out["server"] = {**server, "oidc": {**server["oidc"], "caFile": resolve(server["oidc"]["caFile"])}}
    if isinstance(raw.get("clusters"), list):
        out["clusters"] = [
            {**c, "kubeconfig": resolve(c["kubeconfig"])} if isinstance(c, dict) and c.get("kubeconfig") else c
            for c in raw["clusters"]
        ]
    return out
