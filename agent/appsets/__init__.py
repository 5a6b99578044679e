"""App sets: apps generated from parameter sets, after Argo CD's ApplicationSet.

- :mod:`agent.appsets.template`: renders a template for many parameter sets with the real engines (Go's
  text/template with Sprig, valyala's fasttemplate) in the ``gitops-agent-template`` helper;
- :mod:`agent.appsets.params`: the shapes of parameters (nested for Go templates, flat for fasttemplate);
- :mod:`agent.appsets.generators`: the :class:`~agent.appsets.generators.Generator` protocol and one module per
  generator (``list``, ``clusters``, ``git``, ``matrix``, ``merge``);
- :mod:`agent.appsets.expand`: an app set's generators and template into apps, and a config with them
  (:func:`~agent.appsets.expand.generate`), each app set failing on its own.

Used by :mod:`agent.runtime.oneshot` (``gitops-agent sync``) and :mod:`agent.runtime.appsets` (the running agent).
"""
