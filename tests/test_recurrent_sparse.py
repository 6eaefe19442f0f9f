"""Recurrent hidden layers and fixed sparse connectivity masks (model.recurrent, model.density)."""

import json
import math

import pytest
import torch

from conftest import one_line
from spiketime.app.cli.main import main
from spiketime.app.config import ConfigError, ModelConfig, load
from spiketime.app.factories import lif_network
from spiketime.functional.delay import axonal_delay, delay_taps
from spiketime.functional.li import li_sequence
from spiketime.functional.lif import LIFParams, LIFState, lif_sequence, lif_sequence_recurrent
from spiketime.learning.losses import readout_loss
from spiketime.nn import DelayedLinear, Recurrent
from spiketime.surrogate import Gaussian


def _input(T=40, B=3, C=6, p=0.1, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C, generator=g) < p).to(dtype)


def _masked(net):
    """(name, module) of every masked module of ``net``."""
    return [(n, m) for n, m in net.named_modules() if getattr(m, "mask", None) is not None]


def test_masks_have_exact_density_and_equal_fan_in():
    g = torch.Generator().manual_seed(0)
    lin = DelayedLinear(40, 9, 1.0, "synaptic", 5.0, generator=g, density=0.3)
    assert lin.mask.shape == (9, 40) and lin.mask.dtype == torch.float32
    assert set(lin.mask.unique().tolist()) == {0.0, 1.0}
    assert lin.mask.sum(1).tolist() == [round(0.3 * 40)] * 9 and lin.fan_in == 12
    assert torch.equal(lin.weight != 0, lin.mask.bool())  # masked weights are 0 at init, the others not
    assert torch.equal(lin.effective_weight, lin.weight * lin.mask)
    rec = Recurrent(11, 0.5, 1.0, g)
    assert rec.mask.shape == (11, 11) and rec.mask.diagonal().sum() == 0
    assert rec.mask.sum(1).tolist() == [round(0.5 * 10)] * 11
    assert torch.equal(rec.weight != 0, rec.mask.bool())
    dense_rec = Recurrent(6, 1.0, 1.0, g)  # density 1: all but the diagonal
    assert torch.equal(dense_rec.mask, 1 - torch.eye(6))
    assert DelayedLinear(5, 4, 1.0, generator=g).mask is None  # dense: no mask buffer
    assert DelayedLinear(10, 3, 1.0, generator=g, density=0.01).mask.sum(1).tolist() == [1.0] * 3  # at least 1
    # init std uses the real fan-in: nonzero weights have std ~ weight_scale / sqrt(k)
    big = DelayedLinear(400, 200, 1.0, weight_scale=2.0, generator=g, density=0.25)
    w = big.weight[big.mask.bool()]
    assert w.numel() == 200 * 100 and abs(w.std().item() / (2.0 / math.sqrt(100)) - 1) < 0.03
    big_rec = Recurrent(201, 0.5, 3.0, g)
    w = big_rec.weight[big_rec.mask.bool()]
    assert abs(w.std().item() / (3.0 / math.sqrt(100)) - 1) < 0.03


def test_network_masks_and_recurrent_modules():
    cfg = ModelConfig(hidden=[10, 8], delays="synaptic", delay_max=5.0, recurrent=True, density=0.4)
    net = lif_network(6, 3, cfg, 1.0, seed=1)
    assert net.recurrent and len(net.recurrents) == 2
    assert [p.mask.sum(1).unique().tolist() for p in net.projections[:2]] == [[2.0], [4.0]]  # round(.4*6), round(.4*10)
    assert net.projections[2].mask is None  # the readout stays dense
    assert [r.n for r in net.recurrents] == [10, 8]
    assert [r.mask.sum(1).unique().tolist() for r in net.recurrents] == [[4.0], [3.0]]  # round(.4*9), round(.4*7)
    sd = net.state_dict()
    assert {
        "projections.0.mask",
        "projections.1.mask",
        "recurrents.0.mask",
        "recurrents.1.mask",
        "recurrents.0.weight",
        "recurrents.1.weight",
    } <= set(sd) and "projections.2.mask" not in sd
    groups = net.param_groups()
    assert any(p is net.recurrents[0].weight for p in groups["weights"])
    # weights: 2 feedforward, 2 recurrent, readout; time constants: tau_mem and tau_syn of 2 layers
    assert {k: len(v) for k, v in groups.items()} == {"weights": 5, "time_constants": 4, "delays": 2}
    # recurrent init: half the feedforward gain, scaled by the real fan-in
    gain = cfg.theta / -math.expm1(-1.0 / cfg.tau_mem)
    big = lif_network(6, 3, ModelConfig(hidden=[300], recurrent=True, density=0.5), 1.0, seed=0)
    rec = big.recurrents[0]
    w = rec.weight[rec.mask.bool()]
    assert abs(w.std().item() / (0.5 * gain / math.sqrt(round(0.5 * 299))) - 1) < 0.03
    plain = lif_network(6, 3, ModelConfig(hidden=[10]), 1.0, seed=1)
    assert not plain.recurrent and len(plain.recurrents) == 0 and not _masked(plain)


@pytest.mark.parametrize("delays", ["none", "axonal", "synaptic"])
def test_masked_entries_zero_grad_and_stay_zero_under_adam(delays):
    cfg = ModelConfig(hidden=[12, 10], delays=delays, delay_max=5.0, recurrent=True, density=0.3, weight_scale=3.0)
    net = lif_network(30, 3, cfg, 1.0, seed=2)
    masked = _masked(net)
    assert len(masked) == 4  # two feedforward projections, two recurrent
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    # 3% input spikes: with delays none the first projection takes the event-driven kernel (kernels.sparse)
    x, y = _input(T=30, B=4, C=30, p=0.03), torch.tensor([0, 1, 2, 0])
    for step in range(5):
        opt.zero_grad()
        out, _ = net(x)
        readout_loss(out, y, "max").backward()
        for name, m in masked:
            assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0, name
            assert torch.all(m.weight.grad[m.mask == 0] == 0), name
        opt.step()
        net.project_()
        for name, m in masked:
            assert torch.all(m.weight[m.mask == 0] == 0), name
    _, _, outs = net.run(x)
    assert outs[0].sum() > 0 and outs[1].sum() > 0  # the sparse recurrent layers spike
    # project_ restores exact zeros whatever moved the masked weights (e.g. weight decay or a manual edit)
    with torch.no_grad():
        for _, m in masked:
            m.weight.add_(1.0)
    net.project_()
    for name, m in masked:
        assert torch.all(m.weight[m.mask == 0] == 0) and torch.all(m.weight[m.mask == 1] != 0), name


def _old_network_replay(net_in, n_out, cfg, dt, seed, x):
    """The network of the version without recurrence or masks, rebuilt from the generator and functional ops."""
    g = torch.Generator().manual_seed(seed)
    sizes, sd = [net_in, *cfg.hidden], {}
    gain = cfg.theta / -math.expm1(-dt / cfg.tau_mem)
    for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        sd[f"projections.{layer}.weight"] = torch.randn(b, a, generator=g) * (cfg.weight_scale * gain / math.sqrt(a))
        lo, hi = cfg.delay_init
        sd[f"projections.{layer}.delays"] = (lo + (hi - lo) * torch.rand(a, generator=g)) * cfg.delay_max
        sd[f"neurons.{layer}.log_tau_mem"] = torch.full((b,), math.log(cfg.tau_mem))
        sd[f"neurons.{layer}.log_tau_syn"] = torch.full((b,), math.log(cfg.tau_syn))
    out_gain = cfg.theta / -math.expm1(-dt / cfg.tau_out)
    n = len(cfg.hidden)
    sd[f"projections.{n}.weight"] = torch.randn(n_out, sizes[-1], generator=g) * (
        cfg.weight_scale * out_gain / math.sqrt(sizes[-1])
    )
    sd[f"neurons.{n}.log_tau"] = torch.full((n_out,), math.log(cfg.tau_out))
    h = x
    for layer in range(n):
        taps = delay_taps(cfg.delay_max, dt, "interp")
        xd, _ = axonal_delay(h, sd[f"projections.{layer}.delays"], dt, taps, "interp", cfg.delay_sigma)
        p = LIFParams(sd[f"neurons.{layer}.log_tau_mem"].exp(), sd[f"neurons.{layer}.log_tau_syn"].exp(), cfg.theta)
        h, _ = lif_sequence(xd @ sd[f"projections.{layer}.weight"].t(), p, dt)
    y, _ = li_sequence(h @ sd[f"projections.{n}.weight"].t(), sd[f"neurons.{n}.log_tau"].exp(), dt)
    return sd, y


def test_defaults_build_the_same_network_as_before():
    cfg = ModelConfig(hidden=[9, 7], delay_max=6.0, weight_scale=2.0)
    assert cfg.recurrent is False and cfg.density == 1.0
    net = lif_network(6, 3, cfg, 1.0, seed=3)
    x = _input(T=40, B=3, C=6, p=0.3)  # dense enough for the dense matmul path
    sd_old, y_old = _old_network_replay(6, 3, cfg, 1.0, 3, x)
    sd = net.state_dict()
    assert set(sd) == set(sd_old)  # no mask buffers, no recurrent weights
    for k in sd:
        assert torch.equal(sd[k], sd_old[k]), k
    y, _ = net(x)
    assert y.abs().sum() > 0
    assert torch.equal(y, y_old)
    again = lif_network(
        6, 3, ModelConfig(hidden=[9, 7], delay_max=6.0, weight_scale=2.0, recurrent=False, density=1.0), 1.0, seed=3
    )
    assert torch.equal(again(x)[0], y)


def test_lif_sequence_recurrent_gradcheck_smooth():
    g = torch.Generator().manual_seed(4)
    T, B, N = 7, 2, 3
    d = dict(dtype=torch.float64)
    x = (torch.randn(T, B, N, generator=g, **d) + 0.8).requires_grad_()
    w = (0.5 * torch.randn(N, N, generator=g, **d)).requires_grad_()
    tau = (5.0 + 5.0 * torch.rand(N, generator=g, **d)).requires_grad_()
    tau_syn = (3.0 + 2.0 * torch.rand(N, generator=g, **d)).requires_grad_()
    v0, i0, s0 = (torch.rand(B, N, generator=g, **d).requires_grad_() for _ in range(3))

    def f(x, w, tau, tau_syn, v0, i0, s0):
        p = LIFParams(tau, tau_syn, 1.0, "subtract", Gaussian(0.5), smooth=True)
        s, st, v = lif_sequence_recurrent(x, w, p, 1.0, LIFState(v0, i0, s0), record_v=True)
        return s, v, st.i

    assert torch.autograd.gradcheck(f, (x, w, tau, tau_syn, v0, i0, s0), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_lif_sequence_recurrent_matches_lif_sequence_and_chunks():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(30, 2, 5, generator=g, dtype=torch.float64) * 0.8
    p = LIFParams(torch.full((5,), 8.0, dtype=torch.float64), torch.tensor(4.0, dtype=torch.float64), 0.3)
    s0, st0 = lif_sequence(x, p, 1.0, backend="reference")
    s1, st1 = lif_sequence_recurrent(x, torch.zeros(5, 5, dtype=torch.float64), p, 1.0)
    assert torch.equal(s0, s1) and all(torch.equal(a, b) for a, b in zip(st0, st1))
    w = torch.randn(5, 5, generator=g, dtype=torch.float64)
    s, st, v = lif_sequence_recurrent(x, w, p, 1.0, record_v=True)
    assert s.sum() > 0 and not torch.equal(s, s0) and v.shape == x.shape
    sa, sta = lif_sequence_recurrent(x[:13], w, p, 1.0)
    sb, stb = lif_sequence_recurrent(x[13:], w, p, 1.0, sta)
    assert torch.equal(torch.cat([sa, sb]), s) and all(torch.equal(a, b) for a, b in zip(stb, st))
    with pytest.raises(ValueError, match="w_rec must have shape"):
        lif_sequence_recurrent(x, torch.zeros(4, 5), p, 1.0)


@pytest.mark.parametrize("delays", ["none", "axonal", "synaptic"])
def test_recurrent_network_two_chunks_equal_whole(delays):
    cfg = ModelConfig(hidden=[12, 10], delays=delays, delay_max=6.0, weight_scale=2.0, recurrent=True, density=0.5)
    net = lif_network(5, 3, cfg, 1.0, seed=7).double()
    x = _input(T=50, B=4, C=5, p=0.15, dtype=torch.float64)
    y, _ = net(x)
    y1, s1 = net(x[:23])
    y2, _ = net(x[23:], s1)
    assert torch.equal(torch.cat([y1, y2]), y)
    _, _, outs = net.run(x)
    assert outs[0].sum() > 0 and outs[1].sum() > 0
    # recurrence changes the function: zeroing W_rec gives the feedforward network with the same weights
    with torch.no_grad():
        for r in net.recurrents:
            r.weight.zero_()
    ff = lif_network(5, 3, ModelConfig(hidden=[12, 10], delays=delays, delay_max=6.0, density=0.5), 1.0, 7).double()
    ff.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("recurrents.")})
    torch.testing.assert_close(net(x)[0], ff(x)[0], rtol=1e-10, atol=1e-10)


def test_train_and_eval_checkpoint_round_trip(tmp_path, tiny_sets, capsys):
    out = tmp_path / "run"
    sets = [*tiny_sets, "--set", "model.recurrent=true", "--set", "model.density=0.2", "--set", "train.epochs=2"]
    assert main(["train", "--out", str(out), *sets]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["model"]["recurrent"] is True and m["config"]["model"]["density"] == 0.2
    assert 0.0 <= m["test_accuracy"] <= 1.0 and len(m["history"]) == 2
    sd = torch.load(out / "best.pt", weights_only=True)["model"]
    assert {"projections.0.mask", "recurrents.0.mask", "recurrents.0.weight"} <= set(sd)
    assert torch.all(sd["projections.0.weight"][sd["projections.0.mask"] == 0] == 0)
    assert torch.all(sd["recurrents.0.weight"][sd["recurrents.0.mask"] == 0] == 0)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["test_accuracy"] == m["test_accuracy"]


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", ".nan"])
def test_bad_density_is_one_line_error(value, capsys):
    with pytest.raises(ConfigError) as e:
        load(None, [f"model.density={value}"])
    one_line(e, "model.density")
    assert main(["train", "--set", f"model.density={value}", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.density" in err[0]
