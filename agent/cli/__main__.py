"""``python -m agent.cli``: the command line (:func:`agent.cli.main`)."""

from agent.cli import entrypoint

entrypoint()
