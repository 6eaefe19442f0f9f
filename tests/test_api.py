"""The public face: ``import spiketime as st`` is light, complete and enough for the issue's whole flow."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import subprocess
import sys

import pytest
import torch

import spiketime as st

PACKAGES = ("functional", "nn", "learning", "hardware", "export", "data", "evaluate")


def test_import_spiketime_loads_no_torch():
    code = "import sys, spiketime as st; assert 'torch' not in sys.modules; print(len(st.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 100


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_subpackage_is_a_top_level_name(package):
    mod = importlib.import_module(f"spiketime.{package}")
    missing = [n for n in mod.__all__ if n not in st.__all__]
    assert not missing, f"spiketime.{package}.__all__ names missing from spiketime.__all__: {missing}"
    for name in mod.__all__:
        assert getattr(st, name) is getattr(mod, name), name


def test_every_top_level_name_resolves_and_has_a_docstring():
    undocumented = []
    for name in st.__all__:
        value = getattr(st, name)
        if (inspect.isfunction(value) or inspect.isclass(value)) and not inspect.getdoc(value):
            undocumented.append(name)
    assert not undocumented, undocumented
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        st.nope  # noqa: B018


def test_the_library_network_defaults_are_the_config_defaults():
    """SpikingNetwork's keyword defaults equal ModelConfig's, so `spiketime train` and a plain
    `st.SpikingNetwork(...)` build the same network by default."""
    from spiketime.app.config import ModelConfig
    from spiketime.app.factories import LIF_KEYS

    cfg = ModelConfig()
    params = inspect.signature(st.SpikingNetwork).parameters
    assert set(LIF_KEYS) <= {f.name for f in dataclasses.fields(ModelConfig)}
    for key in LIF_KEYS:
        default = params[key].default
        assert (list(default) if isinstance(default, tuple) else default) == getattr(cfg, key), key
    assert list(params["hidden"].default) == cfg.hidden


def test_the_whole_flow_with_public_names_only(tmp_path):
    """Build a delay network, train it with BPTT and with online learning in loops of our own, quantise it,
    simulate it in integers, export it to NIR and read it back: only ``st.`` names."""
    pytest.importorskip("nir")
    torch.manual_seed(0)
    x, y = st.timing_task("ccisi", "timing", n_samples=64, channels=8, duration=40.0, dt=1.0, num_classes=2, seed=1)
    x, y = torch.as_tensor(x).float(), torch.as_tensor(y).long()
    net = st.SpikingNetwork(8, 2, hidden=[16], dt=1.0, delays="axonal", delay_max=8.0, weight_scale=2.0, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batches = [(st.time_major(x[i : i + 16]), y[i : i + 16]) for i in range(0, 64, 16)]
    delays_before = net.projections[0].delays.detach().clone()
    first = st.bptt_epoch(net, batches, opt, loss="max")
    for _ in range(3):
        last = st.bptt_epoch(net, batches, opt, loss="max")
    assert last < first and not torch.equal(delays_before, net.projections[0].delays.detach())
    split = st.Split(x, y)
    acc = st.evaluate_model(net, split, "max")["accuracy"]
    assert st.evaluate.perturbation_curve is st.perturbation_curve  # st.evaluate: the timing-test package
    assert 0.0 <= acc <= 1.0

    learner = st.OnlineLearner(net)
    w = net.projections[0].weight.detach().clone()
    for xb, yb in batches:
        learner.run(xb, yb)
        opt.step()
        net.project_()
        opt.zero_grad()
    assert not torch.equal(w, net.projections[0].weight.detach())

    spec = st.HardwareSpec(8, True, 16)
    hw = st.evaluate_hardware(net, split, "max", spec)
    assert 0.0 <= hw["test_accuracy"] <= 1.0 and hw["synops_per_sample"] > 0

    path = st.write_nir(net, tmp_path / "net.nir")
    back = st.from_nir(path, dt=1.0)
    with torch.no_grad():
        a, _ = net(batches[0][0])
        b, _ = back(batches[0][0])
    assert torch.allclose(a, b, atol=1e-5)
