"""Desired-state sources: the git repository (``git``) and the manifests loaded from a checkout (``manifests``)."""
