"""gitops-agent: keeps Kubernetes clusters in the state a git repository describes (see ``reconcilers`` for the
pure reconcile logic this package drives)."""

__version__ = "0.1.0"
