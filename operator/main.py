"""``tidelog operator`` (also ``python -m tidelog.operator``): run the operator.

Settings come from flags or, as the Helm chart passes them, from the environment:
``TIDELOG_OPERATOR_WATCH_NAMESPACES`` (comma-separated; empty = every namespace),
``TIDELOG_OPERATOR_APPLY_CRDS``, ``TIDELOG_OPERATOR_BROKER_IMAGE_REPOSITORY``,
``TIDELOG_OPERATOR_RECONCILE_INTERVAL_S``, ``TIDELOG_OPERATOR_LOG_LEVEL``,
``TIDELOG_OPERATOR_METRICS_PORT`` (``/healthz`` and ``/metrics``).

kopf runs standalone (no peering): the chart ships one replica with ``strategy: Recreate``.
kopf and the handlers are imported only when the command runs, so the rest of the CLI stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

ENV = "TIDELOG_OPERATOR_"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV + name, default)


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--watch-namespaces", default=_env("WATCH_NAMESPACES", ""),
                        help="comma-separated namespaces to watch (default: every namespace)")  # fmt: skip
    parser.add_argument("--apply-crds", type=_bool, default=_bool(_env("APPLY_CRDS", "false")),
                        help="apply the CRDs at start (true/false)")  # fmt: skip
    parser.add_argument("--broker-image-repository", default=_env("BROKER_IMAGE_REPOSITORY", "tidelog/broker"))
    parser.add_argument("--reconcile-interval", type=float, default=float(_env("RECONCILE_INTERVAL_S", "60")),
                        help="seconds between two passes over a quiet Cluster")  # fmt: skip
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    parser.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8080")))


def register(sub: Any) -> None:
    """Add ``operator`` to the ``tidelog`` command tree (broker/cli/main.py)."""
    cmd = sub.add_parser("operator", help="run the Kubernetes operator (Cluster and Topic resources)")
    add_arguments(cmd)
    cmd.set_defaults(func=run)


async def _main(args: argparse.Namespace) -> None:
    import kopf  # noqa: PLC0415 - heavy, and only needed here

    from tidelog.operator import handlers  # noqa: PLC0415 - registers the handlers with kopf
    from tidelog.operator.metrics import serve  # noqa: PLC0415

    handlers.RUNTIME.image_repository = args.broker_image_repository
    handlers.RUNTIME.interval = args.reconcile_interval
    handlers.RUNTIME.apply_crds = args.apply_crds
    namespaces = [n.strip() for n in args.watch_namespaces.split(",") if n.strip()]
    runner = await serve(args.metrics_port)
    try:
        await kopf.operator(standalone=True, clusterwide=not namespaces, namespaces=namespaces)
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("kopf").setLevel(max(level, logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(_main(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidelog-operator", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
