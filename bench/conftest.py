"""pytest set-up for the benchmark smoke test: makes ``harness`` and ``limits`` importable.

The project runs pytest with ``--import-mode=importlib``, which does not put ``bench/`` on
``sys.path``; the harness is a set of scripts, not an installed package, so add it here. Also adds
``--bench-system`` (default ``$TIDELOG_BENCH_SYSTEM`` or ``tidelog``; ``kafka`` runs it against
Apache Kafka): the broker the smoke test targets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-system",
        default=os.environ.get("TIDELOG_BENCH_SYSTEM", "tidelog"),
        help="system the bench smoke test runs against: kafka or tidelog",
    )


@pytest.fixture
def bench_system(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--bench-system"))
