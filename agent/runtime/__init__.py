"""The fleet: one worker per cluster (each owning its :class:`agent.sync.cluster.ClusterSync`), their scheduling,
retries and history, leases, rollout, reload, events and notifications, status and metrics."""
