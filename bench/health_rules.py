"""Health evaluation per watch event: a CEL rule against a built-in rule.

The live cache judges an object's health once per watch event, when it turns the event's object into its entry
(``agent.clusters.cache.Entry.of``). This measures that step, in process, for N objects of each kind as a watch
delivers them (with managedFields and status): cert-manager-style Certificates under the CEL rule of
config.example.yaml (three expressions), the same Certificates under the kstatus preset, and Deployments under the
built-in rule. Each is timed over ROUNDS passes; the table gives microseconds per event (median pass) and the
ratio to the built-in rule in the same run.

Usage: .venv/bin/python bench/health_rules.py [--objects 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from common import REPO

sys.path.insert(0, str(REPO))

from agent import celhealth, config
from agent.clusters import cache
from reconcilers import health, resources

RULE = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "current": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
    "inProgress": "status.conditions.exists(e, e.type == 'Issuing' && e.status == 'True')",
    "failed": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')",
}
MANAGED = [
    {
        "manager": "gitops-agent",
        "operation": "Apply",
        "apiVersion": "cert-manager.io/v1",
        "time": "2026-11-29T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:secretName": {}, "f:dnsNames": {}}},
    },
    {
        "manager": "cert-manager-certificates-readiness",
        "operation": "Update",
        "apiVersion": "cert-manager.io/v1",
        "time": "2026-11-29T00:00:01Z",
        "subresource": "status",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": {"f:conditions": {}}},
    },
]


def certificate(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {
            "name": f"cert-{i}",
            "namespace": "bench",
            "resourceVersion": str(1000 + i),
            "generation": 1,
            "managedFields": MANAGED,
        },
        "spec": {"secretName": f"cert-{i}-tls", "dnsNames": [f"host-{i}.example.com"]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date"},
                {"type": "Issuing", "status": "False", "reason": "Issued"},
            ],
            "notAfter": "2027-01-01T00:00:00Z",
        },
    }


def deployment(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"web-{i}",
            "namespace": "bench",
            "resourceVersion": str(1000 + i),
            "generation": 1,
            "managedFields": MANAGED,
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}],
        },
    }


def per_event(objects: list[dict[str, Any]], rules: health.Rules, rounds: int) -> tuple[float, str]:
    keys = [resources.ResourceKey.of(o) for o in objects]
    passes = []
    verdict = ""
    for _ in range(rounds):
        t0 = time.perf_counter()
        for o, k in zip(objects, keys, strict=True):
            entry = cache.Entry.of(o, k, "gitops-agent", rules)
        passes.append((time.perf_counter() - t0) / len(objects) * 1e6)
        verdict = entry.health.status.value
    return statistics.median(passes), verdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cel_rules = celhealth.rules([config.HealthCheck.model_validate(RULE)])
    kstatus_rules = celhealth.rules([config.HealthCheck.model_validate({"kind": "*", "preset": "kstatus"})])
    certs = [certificate(i) for i in range(args.objects)]
    deployments = [deployment(i) for i in range(args.objects)]
    builtin, v0 = per_event(deployments, health.BUILT_IN, args.rounds)
    rows = [
        ("Deployment, built-in rule", builtin, v0),
        ("Certificate, CEL rule (3 expressions)", *per_event(certs, cel_rules, args.rounds)),
        ("Certificate, kstatus preset", *per_event(certs, kstatus_rules, args.rounds)),
        ("Certificate, no rule (metadata only)", *per_event(certs, health.BUILT_IN, args.rounds)),
    ]
    print(f"| objects | rule | us per watch event (median of {args.rounds}) | x built-in | verdict |")
    print("|---|---|---|---|---|")
    for name, us, verdict in rows:
        print(f"| {args.objects} | {name} | {us:.1f} | {us / builtin:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
