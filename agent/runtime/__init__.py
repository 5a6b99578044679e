"""The long-running runtime: the fleet of per-cluster workers, their runner, rollout, leases, self-heal, status
and metrics."""
