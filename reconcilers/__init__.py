"""Pure reconcile logic on plain dicts: identity, ordering, drift, apply and its results.

Nothing here imports ``kubernetes``, ``pygit2``, ``apscheduler`` or ``watchfiles``; clusters are reached only
through the :class:`reconcilers.client.KubeClient` protocol (implemented in ``agent.clusters.connection``).
The layering is enforced by import-linter (see ``pyproject.toml``).
"""
