"""Schemathesis against the running app's own /openapi.json: every operation, generated valid
and invalid requests (examples, coverage and fuzzing phases, a bounded budget), admin token
given, and not one 5xx.

It writes through the API (products, rules, FX rows…), so it runs after the other e2e modules
(pytest takes them in name order) on the session's throwaway store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("CARTWISE_FUZZ_EXAMPLES", "15"))


def test_no_operation_answers_a_server_error(api_url: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(  # our own venv's schemathesis, fixed arguments
        [
            str(st),
            "run",
            f"{api_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
            "--seed",
            "20261127",
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the checkout
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    assert "generated" in summary
