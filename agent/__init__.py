"""gitops-agent: keeps Kubernetes clusters in the state a git repository describes (see ``reconcilers`` for the
pure reconcile logic this package drives). Importing it tunes the garbage collector (:mod:`agent.collector`)."""

from agent import collector

collector.tune()

__version__ = "0.1.0"
