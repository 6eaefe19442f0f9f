"""docs/build_api.py builds the HTML API reference with pdoc: no warnings, a page per public module, no app.

The build exits non-zero while public names lack a docstring; EXPECTED_MISSING is today's list, so that a
docstring added (or a new name without one) makes this test fail until the list is updated.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pdoc")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "build_api.py"
PUBLIC = [
    "spiketime",
    "functional",
    "nn",
    "learning",
    "hardware",
    "export",
    "data",
    "evaluate",
    "surrogate",
    "errors",
    "kernels",
    "files",
    "progress",
]

# Names of spiketime.__all__ and of the public packages' __all__ without a docstring of their own.
EXPECTED_MISSING: list[str] = []


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    return out, proc


def test_the_build_raises_no_warning_and_lists_the_missing_docstrings(built):
    out, proc = built
    lines = proc.stderr.splitlines()
    assert [line for line in lines if line.startswith("warning:")] == []
    assert "Traceback" not in proc.stderr, proc.stderr
    missing = [line.removeprefix("missing docstring: ") for line in lines if line.startswith("missing docstring: ")]
    assert missing == EXPECTED_MISSING, "update EXPECTED_MISSING (a docstring was added, or a name lacks one)"
    assert proc.returncode == (1 if EXPECTED_MISSING else 0), proc.stderr


def test_every_public_module_has_a_page_and_the_app_none(built):
    out, _ = built
    assert (out / "index.html").is_file()
    for name in PUBLIC:
        page = out / ("spiketime.html" if name == "spiketime" else f"spiketime/{name}.html")
        assert page.is_file(), page
    assert not (out / "spiketime" / "app.html").exists() and not (out / "spiketime" / "app").exists()
    top = (out / "spiketime.html").read_text()
    for name in ("SpikingNetwork", "bptt_step", "OnlineLearner", "evaluate_hardware", "from_nir", "read_nmnist"):
        assert f'id="{name}"' in top, name
    assert 'id="SpikingNetwork"' in (out / "spiketime" / "nn.html").read_text()
    assert 'id="bptt_step"' in (out / "spiketime" / "learning.html").read_text()


def test_the_missing_docstrings_flag_passes_and_still_lists_them(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--no-missing-docstrings-fail"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("missing docstring: ") == len(EXPECTED_MISSING)


def test_rest_the_pdoc_reader_leaves_is_rewritten():
    spec = importlib.util.spec_from_file_location("build_api", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "Example::\n\n    x = 1\n\nsee :func:`~spiketime.learning.bptt.bptt_step` and\n::\n\n    y"
    assert mod._rst_for_pdoc(text) == (
        "Example:\n\n    x = 1\n\nsee :func:`spiketime.learning.bptt.bptt_step` and\n\n\n    y"
    )
    assert mod._rst_for_pdoc("a :: b and c::d stay") == "a :: b and c::d stay"
