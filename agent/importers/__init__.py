"""Importing peers' definitions: ``gitops-agent import argocd|flux PATH...`` turns Argo CD's and Flux's objects
into this agent's config, and says what it mapped and what it could not.

- :mod:`agent.importers.documents` reads the YAML files and folders given (multi-document files, ``kind: List``,
  kustomize folders rendered first), each document remembered with its file and index;
- :mod:`agent.importers.report` collects what each field became (mapped, not mapped and why, a credential to
  provide), every finding naming the file, the document and the field;
- :mod:`agent.importers.sources` names the repositories the definitions use (``--map-url`` rewrites their URLs)
  and attaches the credentials their Secrets describe, as references, never as values;
- :mod:`agent.importers.argocd` maps Applications and AppProjects, :mod:`agent.importers.argocd_secrets` cluster
  and repository Secrets, :mod:`agent.importers.argocd_appsets` ApplicationSets;
- :mod:`agent.importers.flux` maps Flux's sources, Kustomizations and HelmReleases.

Called by :mod:`agent.cli.importing`; nothing here talks to a cluster.
"""
