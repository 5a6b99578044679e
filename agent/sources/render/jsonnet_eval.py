"""Evaluate one jsonnet file in a process of its own (run by :mod:`agent.sources.render.jsonnet`, never imported).

Reads a JSON request on stdin: ``root`` (the checkout; no import may lead outside it), ``file``, ``jpaths``
(library directories, searched after the importing file's directory), ``extVars``, ``extCodes``, ``tlaVars``,
``tlaCodes``. Writes the file's value as JSON on stdout, or jsonnet's error on stderr with exit code 1. A process
of its own because the jsonnet binding cannot be interrupted: a file that never ends is killed with its process
group at the render's timeout, and its memory is bounded by ``RLIMIT_DATA`` (:mod:`agent.sources.tools`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> int:
    """Evaluate the request on stdin; 0 on success, 1 on a jsonnet error (printed), 2 on a bad request."""
    import _jsonnet  # type: ignore[import-untyped]

    try:
        request: dict[str, Any] = json.load(sys.stdin)
        root = os.path.realpath(request["root"])
        jpaths = [str(p) for p in request.get("jpaths", [])]
    except (ValueError, KeyError, TypeError) as e:
        print(f"bad request: {e}", file=sys.stderr)
        return 2

    def resolve(base: str, rel: str) -> tuple[str, bytes]:
        candidates = [rel] if os.path.isabs(rel) else [os.path.join(base, rel)] + [os.path.join(j, rel) for j in jpaths]
        for candidate in candidates:
            real = os.path.realpath(candidate)
            if not os.path.isfile(real):
                continue
            if real != root and not real.startswith(root + os.sep):
                raise RuntimeError(f"import {rel!r} leads outside the source (symlink, '..' or an absolute path)")
            with open(real, "rb") as f:
                return candidate, f.read()
        raise RuntimeError(f"import {rel!r} not found (looked beside the importing file and in the app's libs)")

    try:
        out = _jsonnet.evaluate_file(
            request["file"],
            ext_vars=request.get("extVars", {}),
            ext_codes=request.get("extCodes", {}),
            tla_vars=request.get("tlaVars", {}),
            tla_codes=request.get("tlaCodes", {}),
            import_callback=resolve,
        )
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
