"""NIR export and import: exact round trips, the graph's contents, the CLI, and peers loading our graphs."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import one_line
from spiketime.app.config import ConfigError, ModelConfig
from spiketime.app.factories import lif_network
from spiketime.nn.network import SpikingNetwork

nir = pytest.importorskip("nir")

from spiketime.export import from_nir, to_nir, write_nir  # noqa: E402

CASES = {
    "axonal-interp-cuba": {},
    "axonal-gaussian": {"delay_mode": "gaussian", "tau_syn": None},
    "none-zero-reset": {"delays": "none", "tau_syn": None, "reset": "zero"},
    "recurrent-sparse": {"recurrent": True, "density": 0.5},
    "lif-readout": {"readout": "lif"},
}


def _net(dt=1.0, seed=0, **kw) -> SpikingNetwork:
    cfg = ModelConfig(**{"hidden": [16, 12], "delay_max": 6.0, "weight_scale": 3.0, **kw})
    net = lif_network(20, 4, cfg, dt=dt, seed=seed)
    with torch.no_grad():  # trained-looking: a different time constant per neuron, fractional delays
        g = torch.Generator().manual_seed(seed + 1)
        for n in net.neurons:
            p = n.log_tau_mem if hasattr(n, "log_tau_mem") else n.log_tau
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return net


def _events(T=40, B=8, n=20, seed=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < 0.25).to(dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_through_a_nir_file_gives_identical_spikes(case, tmp_path):
    net = _net(**CASES[case])
    cfg = dataclasses.asdict(ModelConfig(**{"hidden": [16, 12], "delay_max": 6.0, **CASES[case]}))
    path = write_nir(net, tmp_path / "net.nir", config=cfg)
    back = from_nir(path, net.dt)
    x = _events()
    y, _, outs = net.run(x)
    y2, _, outs2 = back.run(x)
    assert sum(int(o.sum()) for o in outs[:-1]) > 100, "the test needs spikes"
    assert all(torch.equal(a, b) for a, b in zip(outs, outs2)) and torch.equal(y, y2)
    if case != "recurrent-sparse":  # sparse layers come back dense (same weights, zeros included)
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))


def test_exported_graph_holds_the_expected_nodes_and_continuous_time_constants():
    net = _net(dt=0.5)
    g = to_nir(net)
    kinds = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert kinds == {
        "input": "Input",
        "delay0": "Delay",
        "fc0": "Linear",
        "lif0": "CubaLIF",
        "delay1": "Delay",
        "fc1": "Linear",
        "lif1": "CubaLIF",
        "fc2": "Linear",
        "readout": "LI",
        "output": "Output",
    }
    assert ("input", "delay0") in g.edges and ("lif1", "fc2") in g.edges and ("readout", "output") in g.edges
    tau_ms = net.neurons[0].tau_mem.detach().double()
    beta = torch.exp(-0.5 / tau_ms)
    np.testing.assert_allclose(g.nodes["lif0"].tau_mem, (0.5e-3 / (1 - beta)).numpy(), rtol=1e-12)
    # Euler at dt with these time constants is our neuron: 1 - dt/tau == beta
    np.testing.assert_allclose(1 - 0.5e-3 / g.nodes["lif0"].tau_mem, beta.numpy(), rtol=1e-12)
    # for dt << tau the exported tau is the model's, in seconds
    assert abs(g.nodes["lif0"].tau_mem[0] - tau_ms[0].item() * 1e-3) < 0.5e-3
    np.testing.assert_allclose(g.nodes["lif0"].w_in * 0.5e-3 / g.nodes["lif0"].tau_syn, 1.0)
    np.testing.assert_allclose(g.nodes["delay0"].delay, net.projections[0].delays.detach().double().numpy() * 1e-3)
    assert g.nodes["lif0"].metadata["reset"] == "subtract" and g.metadata["spiketime"]["dt"] == 0.5


def test_a_foreign_graph_without_metadata_imports_with_nir_defaults():
    n_in, n_hid, n_out = 3, 4, 2
    g = torch.Generator().manual_seed(0)
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([n_in])}),
            "d": nir.Delay(delay=np.array([0.0, 1e-3, 2.5e-3])),
            "w1": nir.Affine(weight=torch.randn(n_hid, n_in, generator=g).numpy(), bias=np.zeros(n_hid)),
            "lif": nir.LIF(
                tau=np.full(n_hid, 0.01),
                r=np.ones(n_hid),
                v_leak=np.zeros(n_hid),
                v_threshold=np.ones(n_hid),
                v_reset=np.zeros(n_hid),
            ),
            "w2": nir.Linear(weight=torch.randn(n_out, n_hid, generator=g).numpy()),
            "li": nir.LI(tau=np.full(n_out, 0.02), r=np.ones(n_out), v_leak=np.zeros(n_out)),
            "out": nir.Output(output_type={"output": np.array([n_out])}),
        },
        edges=[("in", "d"), ("d", "w1"), ("w1", "lif"), ("lif", "w2"), ("w2", "li"), ("li", "out")],
    )
    net = from_nir(graph, dt=1.0)
    assert net.neurons[0].reset == "zero" and net.projections[0].bias is not None
    assert net.projections[0].kind == "axonal" and net.projections[0].delay_max == 3.0
    torch.testing.assert_close(net.projections[0].delays.detach(), torch.tensor([0.0, 1.0, 2.5]))
    beta = torch.exp(-1.0 / net.neurons[0].tau_mem.detach().double())
    torch.testing.assert_close(beta, torch.full((n_hid,), 1 - 1e-3 / 0.01, dtype=torch.float64), rtol=1e-6, atol=0)


def test_unsupported_models_and_graphs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        to_nir(_net(delays="synaptic"))
    one_line(e, "synaptic", "axonal")
    with pytest.raises(ConfigError) as e:
        write_nir(_net(), tmp_path)
    one_line(e, "is a directory")
    g = to_nir(_net(delays="none"))
    g.nodes["lif0"] = nir.IF(r=np.ones(16), v_threshold=np.ones(16))
    with pytest.raises(ConfigError) as e:
        from_nir(g, 1.0)
    one_line(e, "'lif0'", "IF")
    with pytest.raises(ConfigError) as e:
        from_nir(tmp_path / "missing.nir", 1.0)
    one_line(e, "not found")
    with pytest.raises(ConfigError) as e:
        from_nir(to_nir(_net(delays="none", tau_mem=2.0)), dt=5.0)  # tau shorter than dt cannot be read at dt
    one_line(e, "exceed dt")


def test_cli_export_writes_a_graph_that_reads_back_to_the_same_network(tmp_path, tiny_sets, capsys):
    from spiketime.app.checkpoints import load_checkpoint, model_from_checkpoint
    from spiketime.app.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *tiny_sets, "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--nir", str(tmp_path / "net.nir")]) == 0
    assert "Delay" in capsys.readouterr().out
    model, cfg = model_from_checkpoint(load_checkpoint(run))
    back = from_nir(tmp_path / "net.nir", cfg.data.dt)
    x = _events(n=model.projections[0].n_in)
    assert all(torch.equal(a, b) for a, b in zip(model.run(x)[2], back.run(x)[2]))
    assert main(["export", str(tmp_path / "nothing"), "--nir", str(tmp_path / "x.nir")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    gamma = tmp_path / "gamma"
    assert main(["train", "--out", str(gamma), *tiny_sets, "--set", "model.type=gamma", "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["export", str(gamma), "--nir", str(tmp_path / "g.nir")]) == 2
    err = capsys.readouterr().err
    assert "gamma" in err and err.count("\n") == 1


def _peer_model(dt: float) -> SpikingNetwork:
    """What the peers' NIR readers express: no delays, LIF (no synapse) with reset to zero, one time constant and
    threshold per layer, a LIF readout (neither reader maps NIR's LI)."""
    cfg = ModelConfig(
        hidden=[16, 12],
        delays="none",
        tau_syn=None,
        reset="zero",
        readout="lif",
        tau_mem=20 * dt,
        tau_out=15 * dt,
        weight_scale=3.0,
    )
    return lif_network(20, 4, cfg, dt=dt, seed=0)


def test_snntorch_loads_our_graph_and_gives_the_same_spikes():
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    net = _peer_model(dt=0.1)  # snnTorch's reader assumes dt = 1e-4 s
    sn = import_from_nir(to_nir(net))
    x = _events(T=60)
    y, _, outs = net.run(x)
    utils.reset(sn)
    steps = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            o = sn(x[t])
            steps.append(o[0] if isinstance(o, tuple) else o)
    assert y.sum() > 20
    assert torch.equal(torch.stack(steps), y)


def test_spikingjelly_loads_our_graph_and_gives_the_same_spikes():
    pytest.importorskip("spikingjelly")
    try:
        from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir
    except ImportError:
        pytest.skip("this SpikingJelly has no NIR reader")
    net = _peer_model(dt=1.0).double()
    sj = import_from_nir(to_nir(net), dt=1e-3, step_mode="m", dtype=torch.float64)
    x = _events(T=60, dtype=torch.float64)
    y, _, _ = net.run(x)
    o = sj(x)
    o = o[0] if isinstance(o, tuple) else o
    assert y.sum() > 20
    assert torch.equal(o.detach(), y)


def _lif_chain(v_reset: np.ndarray, v_threshold: float = 1.0) -> "nir.NIRGraph":
    """Input -> Linear(1x1, weight 1) -> LIF (tau 10 ms, r 1) -> Linear -> LI -> Output."""
    one = np.ones(1)
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([1])}),
            "w1": nir.Linear(weight=np.ones((1, 1))),
            "lif": nir.LIF(tau=0.01 * one, r=one, v_leak=0 * one, v_threshold=v_threshold * one, v_reset=v_reset),
            "w2": nir.Linear(weight=np.ones((1, 1))),
            "li": nir.LI(tau=0.01 * one, r=one, v_leak=0 * one),
            "out": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("in", "w1"), ("w1", "lif"), ("lif", "w2"), ("w2", "li"), ("li", "out")],
    )


def test_a_nonzero_v_reset_is_refused_not_imported_as_zero():
    """NIR semantics (reset to v_reset = -5) and spiketime's reset to zero give different spike trains on the same
    drive (2 against 5 spikes here), so such a graph is refused with one line instead of imported silently."""
    dt = 1.0
    drive = torch.full((60, 1, 1), 1.5)
    beta = 1 - dt * 1e-3 / 0.01

    def nir_lif_spikes(v_reset: float) -> int:  # forward Euler of NIR's LIF at dt: v += dt/tau (-v + I)
        v, n = 0.0, 0
        for i in drive[:, 0, 0].tolist():
            v = beta * v + (1 - beta) * i
            if v > 1.0:
                v, n = v_reset, n + 1
        return n

    imported = from_nir(_lif_chain(np.zeros(1)), dt)
    _, _, outputs = imported.run(drive)
    assert int(outputs[0].sum()) == nir_lif_spikes(0.0)  # v_reset 0: spiketime's reset zero is NIR's reset
    assert (nir_lif_spikes(-5.0), nir_lif_spikes(0.0)) == (2, 5)  # importing a reset to -5 as 0 would be wrong
    with pytest.raises(ConfigError) as e:
        from_nir(_lif_chain(np.full(1, -5.0)), dt)
    one_line(e, "'lif'", "v_reset [-5.0]", "cannot be imported exactly")
