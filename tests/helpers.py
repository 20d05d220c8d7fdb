"""Running one check on a config, the way the runner does, for check tests."""

from __future__ import annotations

from dnncheck.config import AuditConfig
from dnncheck.context import Context
from dnncheck.runner import run_check


def run_one(check, **cfg):
    cfg.setdefault("epochs", 3)
    ctx = Context(AuditConfig(**cfg))
    ctx.prepare()
    ctx.plan_probes([check])
    return run_check(check, ctx)


def messages(result) -> str:
    return " | ".join(f.message for f in result.findings)
