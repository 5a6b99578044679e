"""The renderers, in the order :mod:`agent.sources.manifests` asks them: a directory a renderer takes whole
(a chart before a kustomization, as a chart directory may hold a ``kustomization.yaml`` of its own), then files
one by one. A new renderer is a module implementing :class:`agent.sources.render.protocol.Renderer` and one entry
here."""

from __future__ import annotations

from agent.sources.render import helm, jsonnet, kustomize, plain, protocol

RENDERERS: tuple[protocol.Renderer, ...] = (helm.Helm(), kustomize.Kustomize(), plain.Plain(), jsonnet.Jsonnet())
"""Every renderer, first match wins."""

PLAIN: protocol.Renderer = RENDERERS[2]
"""What reads a file an app names directly when no renderer claims its name (parsed as YAML, as before)."""
