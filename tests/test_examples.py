"""The scripts in examples/ run as a user runs them (``python examples/NAME.py --tiny``) and print sane numbers."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NMNIST = ROOT.parent / "shared" / "data" / "nmnist-1k"  # the examples' default (never copied into the project)


def run(name, *args, expect=0):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == expect, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def number(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in the output:\n{text}"
    return float(m.group(1))


def test_every_example_uses_only_the_public_names():
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert len(scripts) >= 4
    for script in scripts:
        text = script.read_text()
        imports = re.findall(r"^(?:from|import) ([\w.]+)", text, flags=re.MULTILINE)
        assert set(imports) <= {"argparse", "sys", "tempfile", "pathlib", "numpy", "torch", "spiketime"}, script
        assert "import spiketime as st" in text and "spiketime." not in text, script
        assert "--tiny" in text and "Run::" in text, script
        assert script.name in (EXAMPLES / "README.md").read_text(), script


def test_train_delays_bptt():
    out = run("train_delays_bptt.py", "--tiny").stdout
    acc = number(r"test accuracy ([\d.]+)", out)
    chance = number(r"chance ([\d.]+)", out)
    assert 0.0 <= acc <= 1.0 and chance == pytest.approx(1 / 3, abs=1e-3)
    assert acc > chance + 0.1, out  # timing-only CCISI: above chance needs the delays (0.75 at seed 0)
    mean, top = number(r"delays layer 1: mean ([\d.]+)", out), number(r"max ([\d.]+) ms", out)
    assert 0.0 <= mean <= top <= 15.0
    losses = [float(v) for v in re.findall(r"train loss ([\d.]+)", out)]
    assert len(losses) == 10 and losses[-1] < losses[0]


@pytest.mark.parametrize("update_every", [None, 10])
def test_online_streaming(update_every):
    args = ["--tiny"] + ([] if update_every is None else ["--update-every", update_every])
    out = run("online_streaming.py", *args).stdout
    first, last = number(r"first quarter ([\d.]+)", out), number(r"last quarter ([\d.]+)", out)
    assert np.isfinite([first, last]).all() and last < first, out
    sizes = re.search(r"state bytes T=40: (\d+)\s+T=160: (\d+)", out)
    assert sizes and int(sizes.group(1)) == int(sizes.group(2)) > 0, out  # memory independent of T


def test_quantise_export(tmp_path):
    path = tmp_path / "net.nir"
    out = run("quantise_export.py", "--tiny", "--out", path).stdout
    assert path.is_file()
    assert "fake_quantize = s q: True" in out
    assert 0.0 < number(r"max \|W - s q\| / max \|W\| ([\d.e-]+)", out) < 1 / 127
    for pattern in (r"accuracy float ([\d.]+)", r"integer ([\d.]+)  synops"):
        assert 0.0 <= number(pattern, out) <= 1.0
    assert "identical spikes True" in out  # the int64 simulator is the fixed-point model, spike for spike
    assert number(r"readout max diff ([\d.e+-]+)", out) < 1e-9
    assert number(r"hidden spike agreement ([\d.]+)", out) > 0.8  # 0.96 at seed 0
    assert 0.0 <= number(r"same prediction ([\d.]+)", out) <= 1.0
    assert number(r"round-trip max output diff ([\d.e+-]+)", out) < 1e-5


@pytest.mark.skipif(not NMNIST.is_dir(), reason=f"{NMNIST} (real N-MNIST recordings) is absent")
def test_read_real_nmnist():
    out = run("read_real_data.py", "--tiny").stdout
    assert "nmnist: 20 samples, sensor (34, 34, 2), 10 classes" in out
    shape = re.search(r"binned x \((\d+), (\d+), (\d+)\)", out)
    assert shape and int(shape.group(1)) == 20 and 290 <= int(shape.group(2)) <= 340 and shape.group(3) == "578"
    assert 1000 < number(r"events per sample: mean (\d+)", out) < 8000
    assert 0.0 < number(r"mean rate ([\d.]+) Hz", out) < 1000.0


def test_read_an_shd_file(tmp_path):
    import spiketime as st

    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0.0, 0.5, 100)) for _ in range(12)]
    units = [rng.integers(0, 700, 100) for _ in range(12)]
    st.write_shd(tmp_path / "shd.h5", times, units, [i % 3 for i in range(12)])
    out = run("read_real_data.py", tmp_path / "shd.h5", "--tiny").stdout
    assert "shd: 8 samples, sensor (700,), 3 classes" in out
    assert re.search(r"binned x \(8, 50, 700\)", out), out  # 500 ms in 10 ms bins


def test_read_real_data_names_a_missing_path(tmp_path):
    proc = run("read_real_data.py", tmp_path / "nothing", expect=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "nothing") in lines[0]
