"""Reaching clusters: connections (kubeconfig, token, in-cluster, EKS), the live cache and `clusters check`."""
