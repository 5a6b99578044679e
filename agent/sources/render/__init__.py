"""Renderers: what turns a source's files into desired objects, one module per kind behind one protocol
(:class:`agent.sources.render.protocol.Renderer`), listed in :mod:`agent.sources.render.registry`."""
