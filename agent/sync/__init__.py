"""The sync wing: one sync of one cluster, and what keeps that cluster in line between syncs.

:class:`agent.sync.cluster.ClusterSync` is the entry point; it owns the cluster's session
(:mod:`agent.sync.session`: connection, live cache, inventory watch, self-heal and drift monitor) and its desired
state (:mod:`agent.sync.desired`: render, decrypt, substitute, mask), and runs the app-by-app sync
(:mod:`agent.sync.appsync`), the prune of removed apps (:mod:`agent.sync.removed`), ownership of objects
(:mod:`agent.sync.ownership`) and the cluster's result (:mod:`agent.sync.appresults`). Every write of the wing asks
the write gate first (:mod:`agent.sync.gate`, with the holds and sync windows it reads). The wing never imports
:mod:`agent.runtime` (the fleet: workers, scheduling, leases, rollout, reload, events, notifications, status):
an import-linter contract in pyproject.toml.
"""
