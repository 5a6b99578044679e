"""The ``gitops-agent`` command line, with kubectl's and Flux's habits.

Commands that work from the config alone (no agent running):

- ``sync``: reconcile every (or the named) cluster once; ``--wait [--timeout 5m]`` then waits for Healthy.
- ``diff``: what a sync would change, like ``kubectl diff``.
- ``clusters check``: reachable, identity, version and missing permissions per cluster.
- ``config validate``: the config and each app's path in its source, without a cluster; ``config schema``: the
  config's JSON Schema, for editors.
- ``run``: the scheduler and the HTTP server until SIGTERM.

Commands that ask a running agent (``--url``, else the config's ``server.listen``; see :mod:`agent.cli.client`):

- ``status [--app A] [--cluster C] [-o table|wide|json|yaml]``;
- ``get apps|clusters|sources|appsets [NAME] [-o ...]``; ``appsets``: the app sets (generators, apps made, errors);
- ``events [--app A] [--cluster C] [--follow]``;
- ``reconcile [APP] [--cluster C] [--timeout 5m]``: sync now and wait for it (an app with ``sync.auto: false``
  is written only so);
- ``trace Kind[.group]/namespace/name [--cluster C]``: which app, source, revision, file and document manage a
  live object, its last sync, drift and health (or its field managers when no app does);
- ``history APP [--cluster C]``: an app's last syncs per cluster (revision, start, result, trigger);
- ``rollback APP --cluster C --to REV [--until-new-revision]``, ``unpin APP --cluster C``: pin an app on a cluster
  to an earlier revision of its source (it keeps syncing there), or release it;
- ``suspend|resume [APP] [--cluster C] [--reason R]``: hold an app (everywhere, or on one cluster) or a whole
  cluster: no write of any kind until resumed; its drift is still shown.

And ``version``, ``completion bash|zsh|fish`` (argcomplete). ``--config`` defaults to ``$GITOPS_AGENT_CONFIG``.
One-shot commands log nothing unless ``-v`` (``-vv``: debug); ``run`` logs at info. Exit codes, for every command:
0 done and in line; 1 done but something is not (an object failed, drift, not Synced or not Healthy); 2 could not
be done (bad config or flags, a source that cannot be fetched, an agent that cannot be asked).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import pathlib
import socket
import sys

import argcomplete

from agent import __version__, collector, config, malloc
from agent.cli import about, client, output, syncing, views
from reconcilers import errors

EXIT_OK, EXIT_FAILED, EXIT_ERROR = output.EXIT_OK, output.EXIT_FAILED, output.EXIT_ERROR
CONFIG_ENV = "GITOPS_AGENT_CONFIG"
"""The environment variable ``--config`` defaults to."""

_EPILOG = """exit codes: 0 done and in line; 1 done, but something is not (an object failed, drift, not Synced or
not Healthy); 2 could not be done (bad config or flags, a source that cannot be fetched, an agent that cannot be
asked). --config defaults to $GITOPS_AGENT_CONFIG."""


def _config_flag(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    default = os.environ.get(CONFIG_ENV)
    p.add_argument(
        "--config",
        default=default,
        required=required and default is None,
        help=f"the agent config file (default ${CONFIG_ENV})",
    )


def _output_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=output.FORMATS, default="table", help="table (default), wide, json, yaml")


def _client_flags(p: argparse.ArgumentParser) -> None:
    _config_flag(p, required=False)
    p.add_argument("--url", help="the agent's address (default: server.listen of --config, else 127.0.0.1:8080)")
    p.add_argument(
        "--token-env", default="GITOPS_AGENT_TOKEN", help="environment variable holding the API's bearer token"
    )


def parser() -> argparse.ArgumentParser:
    """The command line's parser (every command, flag and help text)."""
    top = argparse.ArgumentParser(
        prog="gitops-agent", description="Keep Kubernetes clusters in the state git describes.", epilog=_EPILOG
    )
    top.add_argument("--version", action="version", version=f"gitops-agent {__version__}")
    top.add_argument("-v", "--verbose", action="count", default=0, help="log (-v info, -vv debug) on stderr")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sync", help="reconcile every (or the named) cluster once", epilog=_EPILOG)
    _config_flag(p)
    p.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    p.add_argument("--app", help="only this app (on the clusters it is placed on, or the --cluster ones)")
    p.add_argument(
        "--resource",
        action="append",
        metavar="KIND[.GROUP]/NAMESPACE/NAME",
        help="a selective sync of --app: write only this object (repeatable; no hook runs, nothing is pruned)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and show what would change; write nothing")
    p.add_argument("--json", action="store_true", help="print the results as JSON (as -o json)")
    _output_flag(p)
    p.add_argument("--wait", action="store_true", default=None, help="then wait for every object to be Healthy")
    p.add_argument("--timeout", help="how long --wait waits, as 20s, 5m or 1h (default: sync.timeout)")
    p.add_argument("--force-prune", action="store_true", help="prune even beyond the prune budget")
    p.add_argument(
        "--prune-orphans",
        action="store_true",
        help="also delete orphans: objects with this agent's tracking annotation in neither git nor the inventory",
    )
    p = sub.add_parser("diff", help="show what a sync would change (exit 0 in sync, 1 drift, 2 error)")
    _config_flag(p)
    p.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    p.add_argument("--app", help="only this app")
    p.add_argument("--revision", help="a commit, branch or tag of the source not yet deployed")
    p = sub.add_parser("run", help="run the scheduler and the HTTP server until SIGTERM")
    _config_flag(p)
    p = sub.add_parser("clusters", help="cluster registration commands")
    check = p.add_subparsers(dest="clusters_command", required=True, metavar="COMMAND").add_parser(
        "check", help="reachable, identity, version and permissions per cluster (exit 1 when one lacks something)"
    )
    _config_flag(check)
    check.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    check.add_argument(
        "--print-rbac",
        action="store_true",
        help="print the Roles and ClusterRoles (with bindings) the apps need, as YAML",
    )

    p = sub.add_parser("config", help="config file commands")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    validate = config_sub.add_parser(
        "validate", help="check the config and each app's path in its source, without a cluster (exit 1, 2 on errors)"
    )
    _config_flag(validate)
    config_sub.add_parser("schema", help="print the config's JSON Schema (for editors: yaml-language-server)")

    p = sub.add_parser("status", help="a running agent's clusters and apps (exit 1 unless Synced and Healthy)")
    _client_flags(p)
    p.add_argument("--app", help="only this app")
    p.add_argument("--cluster", help="only this cluster")
    _output_flag(p)
    p = sub.add_parser("get", help="a running agent's apps, clusters, sources or app sets, or one of them")
    p.add_argument("kind", choices=("apps", "clusters", "sources", "appsets"))
    p.add_argument("name", nargs="?", help="one of them")
    _client_flags(p)
    _output_flag(p)
    p = sub.add_parser("appsets", help="a running agent's app sets: generators, apps made, errors (get appsets)")
    _client_flags(p)
    _output_flag(p)
    p = sub.add_parser("events", help="a running agent's newest events, oldest first")
    _client_flags(p)
    p.add_argument("--app", help="only events that name this app")
    p.add_argument("--cluster", help="only this cluster's events")
    p.add_argument("-f", "--follow", action="store_true", help="then print new events as they come")
    _output_flag(p)
    p = sub.add_parser("reconcile", help="ask a running agent to sync an app (or a cluster) now, and wait for it")
    p.add_argument("app", nargs="?", help="the app (its clusters are synced)")
    _client_flags(p)
    p.add_argument("--cluster", help="the cluster to sync (with APP: only there)")
    p.add_argument("--timeout", default="5m", help="how long to wait for the sync, as 30s or 5m (default 5m)")

    p = sub.add_parser("trace", help="which app, source, revision and file manage a live object (flux trace)")
    p.add_argument("object", help="Kind[.group]/namespace/name, or Kind[.group]/name for a cluster-scoped object")
    _client_flags(p)
    p.add_argument("--cluster", help="only this cluster")
    _output_flag(p)

    p = sub.add_parser("history", help="an app's last syncs on each cluster: revision, start, result, trigger")
    p.add_argument("app")
    _client_flags(p)
    p.add_argument("--cluster", help="only this cluster")
    _output_flag(p)
    p = sub.add_parser("rollback", help="pin an app on a cluster to an earlier revision of its source")
    p.add_argument("app")
    _client_flags(p)
    p.add_argument("--cluster", required=True, help="the cluster")
    p.add_argument("--to", required=True, help="a commit SHA, tag or branch still in the app's source")
    p.add_argument("--until-new-revision", action="store_true", help="release the pin once git's head moves on")
    p = sub.add_parser("unpin", help="release an app's pin on a cluster: back to its source's head")
    p.add_argument("app")
    _client_flags(p)
    p.add_argument("--cluster", required=True, help="the cluster")

    for verb, what in (("suspend", "stop every write to"), ("resume", "write again to")):
        p = sub.add_parser(verb, help=f"ask a running agent to {what} an app (anywhere or on --cluster) or a cluster")
        p.add_argument("app", nargs="?", help="the app (default: the whole --cluster)")
        _client_flags(p)
        p.add_argument("--cluster", help="the cluster (with APP: only there; alone: the whole cluster)")
        if verb == "suspend":
            p.add_argument("--reason", default="", help="why (shown in the status and the events)")

    p = sub.add_parser("import", help="write a config from Argo CD's or Flux's definitions (exit 1: some not mapped)")
    p.add_argument("tool", choices=("argocd", "flux"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="YAML files or folders (kustomize folders are built)")
    p.add_argument("--out", help="write the config here (default: stdout); the report goes to stderr")
    p.add_argument("--map-url", action="append", default=[], metavar="FROM=TO", help="rewrite repository URLs")
    p.add_argument(
        "--kubeconfig",
        help="flux: the cluster the apps go to; argocd: its in-cluster (default: the agent's own, inCluster)",
    )
    p.add_argument(
        "--git-repository",
        action="append",
        default=[],
        metavar="NAME=URL[@BRANCH]",
        help="flux: a GitRepository the files name but do not hold (flux bootstrap's flux-system)",
    )
    p.add_argument("--report", choices=("text", "json"), default="text", help="the report's format on stderr")
    p = sub.add_parser("version", help="versions of the agent, its git commit, helm, kustomize, sops, the client")
    _output_flag(p)
    p = sub.add_parser("completion", help="the shell completion script: source <(gitops-agent completion bash)")
    p.add_argument("shell", choices=about.SHELLS)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module doc)."""
    top = parser()
    argcomplete.autocomplete(top)
    args = top.parse_args(argv)
    _logging(args.command, args.verbose)
    malloc.tune()  # before any thread allocates
    collector.freeze()  # what the imports made lives as long as the process
    try:
        return _dispatch(args)
    except client.AgentError as e:
        return output.error(str(e), e.hint)
    except errors.ConfigError as e:
        return output.error(str(e), _config_hint(args))
    except errors.GitOpsError as e:
        return output.error(str(e))
    except KeyboardInterrupt:
        return EXIT_FAILED


_CLIENT_COMMANDS = (
    *("status", "get", "appsets", "events", "reconcile", "trace", "history"),
    *("suspend", "resume", "rollback", "unpin"),
)
"""The commands that ask a running agent."""


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "version":
        return about.version(args.output)
    if command == "completion":
        return about.completion(args.shell)
    if command in (
        "status",
        "get",
        "appsets",
        "events",
        "reconcile",
        "suspend",
        "resume",
        "trace",
        "rollback",
        "unpin",
        "history",
    ):
        agent = client.Client.of(args.url, args.config, args.token_env)
        if command == "history":
            return views.history(agent, args.app, args.cluster, args.output)
        if command in ("rollback", "unpin"):
            to = args.to if command == "rollback" else None
            return client.rollback(
                agent, args.app, args.cluster, to, until_new=getattr(args, "until_new_revision", False)
            )
        if command == "trace":
            return views.trace(agent, args.object, args.cluster, args.output)
        if command in ("suspend", "resume"):
            if args.app is None and args.cluster is None:
                raise errors.ConfigError(f"{command}: name an APP or give --cluster")
            reason = getattr(args, "reason", "")
            return client.hold(agent, args.app, args.cluster, reason, resume=command == "resume")
        if command == "status":
            return views.status(agent, args.app, args.cluster, args.output)
        if command == "get":
            return views.get(agent, args.kind, args.name, args.output)
        if command == "appsets":
            return views.get(agent, "appsets", None, args.output)
        if command == "events":
            return views.events(agent, args.app, args.cluster, args.follow, args.output)
        if args.app is None and args.cluster is None:
            raise errors.ConfigError("reconcile: name an APP or give --cluster")
        timeout = syncing.parse_timeout(args.timeout)
        return client.reconcile(agent, args.app, args.cluster, timeout)
    if command == "import":
        from agent.cli import importing

        return importing.import_(
            args.tool, args.paths, args.out, args.map_url, args.report, args.kubeconfig, args.git_repository
        )
    if command == "config" and args.config_command == "schema":
        from agent import config_reference

        print(json.dumps(config_reference.schema(), indent=2))
        return EXIT_OK
    if command == "config":
        from agent.cli import validating

        return validating.validate(args.config)
    cfg = config.load_config(args.config)
    if command == "sync":
        if args.timeout is not None:
            cfg = syncing.with_timeout(cfg, args.timeout)
        return syncing.sync(
            cfg,
            args.cluster,
            app=args.app,
            dry_run=args.dry_run,
            fmt="json" if args.json else args.output,
            force_prune=args.force_prune,
            prune_orphans=args.prune_orphans,
            wait=args.wait,
            selected=args.resource or (),
        )
    if command == "diff":
        return syncing.diff(cfg, args.cluster, args.app, args.revision)
    if command == "clusters":
        from agent.cli import checking

        return checking.clusters_check(cfg, args.cluster, print_rbac=args.print_rbac)
    return _run(cfg, pathlib.Path(args.config))


def _logging(command: str, verbose: int) -> None:
    """``run`` logs at info (debug with ``-v``); the other commands print their results and log nothing unless
    ``-v`` (info) or ``-vv`` (debug), except the progress of a health wait (``sync --wait``)."""
    if command == "run":
        level = logging.DEBUG if verbose else logging.INFO
    else:
        level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.CRITICAL + 1
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
    progress = logging.getLogger("agent.progress")
    if command == "sync" and progress.getEffectiveLevel() > logging.INFO:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False


def _config_hint(args: argparse.Namespace) -> str:
    if getattr(args, "config", None):
        return f"check {args.config} against config.example.yaml; the error names the key"
    return ""


def _run(cfg: config.AgentConfig, path: pathlib.Path) -> int:
    # The long-running parts load only for ``run``: a one-shot ``sync`` starts faster without them.
    from agent.api import server
    from agent.runtime import fleet, reload

    busy = _port_taken(cfg.server.host, int(cfg.server.listen.rpartition(":")[2]))
    if busy:
        return output.error(
            f"server.listen {cfg.server.listen}: {busy}", "stop what listens there, or set another server.listen"
        )
    agent = fleet.Fleet(cfg)
    server.create_app(agent)  # fails fast (exit 2) on a missing token or webhook secret
    agent.start()
    stop_reload = reload.start(agent, path)
    try:
        server.serve(agent)
    finally:
        stop_reload.set()
        agent.shutdown()
    return EXIT_OK


def _port_taken(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on ("" when it can), tried before anything starts: the server binds
    it only after the workers started syncing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
    return ""


def entrypoint() -> None:
    """The console script."""
    sys.exit(main())
