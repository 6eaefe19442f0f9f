"""Quantisation, the fixed-point model and its integer-exact simulator, deployment metrics, eval --hardware, QAT."""

import json
import math

import pytest
import torch

from conftest import one_line
from spiketime.app.config import ConfigError, ModelConfig
from spiketime.app.factories import lif_network
from spiketime.functional.quant import fake_quantize, leak_shift, quantize
from spiketime.hardware.evaluate import evaluate_hardware, quantized_weights_model
from spiketime.hardware.fixed_point import HardwareSpec, hardware_layers, run_fake_quant
from spiketime.hardware.integer_sim import run_integer
from spiketime.hardware.metrics import activation_sparsity, footprint_bytes, network_synops, synops
from spiketime.nn.network import SpikingNetwork


def _net(n_in=20, n_out=4, seed=0, **kw) -> SpikingNetwork:
    cfg = ModelConfig(**{"hidden": [16, 12], "delay_max": 6.0, "weight_scale": 3.0, **kw})
    return lif_network(n_in, n_out, cfg, dt=1.0, seed=seed)


def _events(T=40, B=8, n=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, n, generator=g) < 0.2).float()
    return x + (torch.rand(T, B, n, generator=g) < 0.05).float()  # some bins hold two events


# ------------------------------------------------------------------------------------ quantiser


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_is_symmetric_with_at_most_2_pow_bits_minus_1_levels(bits, per_channel):
    w = torch.randn(6, 50)
    w[2] = 0.0
    q, s = quantize(w, bits, per_channel)
    qm = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int64 and int(q.abs().max()) == qm
    rows = [q] if not per_channel else list(q)
    for r in rows:
        assert len(r.unique()) <= 2**bits - 1
    assert (s.numel() == 6) == per_channel
    err = (q * s - w).abs()
    assert float((err - s / 2).max()) <= 1e-6  # rounding error at most half a step
    assert torch.equal(q[2], torch.zeros(50, dtype=torch.int64))


def test_fake_quantize_values_and_straight_through_gradient():
    w = torch.randn(5, 7, requires_grad=True)
    y = fake_quantize(w, 4, True)
    q, s = quantize(w, 4, True)
    torch.testing.assert_close(y, q.float() * s)
    y.backward(torch.arange(35.0).view(5, 7))
    torch.testing.assert_close(w.grad, torch.arange(35.0).view(5, 7))


def test_leak_shift_picks_the_nearest_one_minus_two_pow_minus_k():
    betas = torch.tensor([0.5, 0.75, 0.875, 0.9, 0.95, 0.999])
    assert leak_shift(betas).tolist() == [1, 2, 3, 3, 4, 10]


# ------------------------------------------------------------------------------------ integer-exact simulator


CASES = {
    "axonal-cuba": {},
    "synaptic": {"delays": "synaptic"},
    "none-zero-reset": {"delays": "none", "tau_syn": None, "reset": "zero"},
    "recurrent-sparse": {"recurrent": True, "density": 0.5},
    "lif-readout": {"readout": "lif"},
    "gaussian-delays": {"delay_mode": "gaussian"},
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("bits,per_channel,membrane", [(8, True, 16), (4, True, 16), (8, False, 12), (4, False, 10)])
def test_integer_simulator_reproduces_the_fake_quantised_model_exactly(case, bits, per_channel, membrane):
    net = _net(**CASES[case])
    layers = hardware_layers(net, HardwareSpec(bits, per_channel, membrane))
    x = _events()
    y_fq, s_fq, sat_fq = run_fake_quant(layers, x)
    y_int, s_int, lsb, sat_int = run_integer(layers, x)
    assert all(s.dtype == torch.int64 for s in s_int) and y_int.dtype == torch.int64
    assert sum(int(s.sum()) for s in s_int) > 100, "the test needs spikes"
    for a, b in zip(s_fq, s_int):
        assert torch.equal(a.to(torch.int64), b)
    if layers[-1].spiking:
        assert torch.equal(y_fq.to(torch.int64), y_int)
    else:
        assert torch.equal(y_fq, lsb * y_int.double())
    assert sat_fq == sat_int


def test_small_membranes_saturate_and_the_simulators_still_agree():
    net = _net()
    layers = hardware_layers(net, HardwareSpec(8, True, 10))
    x = _events()
    _, s_fq, sat = run_fake_quant(layers, x)
    _, s_int, _, sat_int = run_integer(layers, x)
    assert sat > 0 and sat == sat_int
    assert all(torch.equal(a.long(), b) for a, b in zip(s_fq, s_int))
    assert all(int(v.min()) >= -512 for v in s_int)


def test_integer_simulator_rejects_fractional_input():
    layers = hardware_layers(_net(), HardwareSpec(8, True, 16))
    with pytest.raises(ValueError, match="event counts"):
        run_integer(layers, _events() * 0.5)


def test_too_few_membrane_bits_is_a_one_line_error():
    with pytest.raises(ConfigError) as e:
        hardware_layers(_net(weight_scale=0.05), HardwareSpec(8, True, 6))
    one_line(e, "membrane_bits 6")


def test_fine_fixed_point_tracks_the_float_network():
    """With 16-bit weights, 40-bit membranes, leaks that are exactly 1 - 2^-k and whole-step delays, the fixed-point
    model computes the float hard-spike network up to rounding: >= 99% of the spikes agree."""
    tau = -1.0 / math.log(1 - 2**-3)  # beta = 0.875 exactly at dt = 1
    net = _net(tau_mem=tau, tau_syn=-1.0 / math.log(1 - 2**-2), delays="none", weight_scale=1.5)
    x = _events()
    _, _, outs = net.run(x)
    _, s_fq, sat = run_fake_quant(hardware_layers(net, HardwareSpec(16, True, 40)), x)
    assert sat == 0
    agree = sum(int((a == b.float()).sum()) for a, b in zip(outs[:-1], s_fq)) / sum(a.numel() for a in outs[:-1])
    assert sum(int(a.sum()) for a in outs[:-1]) > 100 and agree >= 0.99, agree


# ------------------------------------------------------------------------------------ metrics


def test_synops_by_hand():
    # 3 inputs -> 2 outputs; input 0 has 2 nonzero outgoing weights, input 1 one, input 2 none
    w = torch.tensor([[1.0, 0.0, 0.0], [2.0, -1.0, 0.0]])
    a = torch.zeros(3, 2, 3)  # [T, B, N]
    a[0, 0, 0] = 1  # 2 ops
    a[1, 0, 0] = 3  # several events in one bin: still one accumulate per weight: 2 ops
    a[1, 1, 1] = 1  # 1 op
    a[2, 1, 2] = 1  # no outgoing weights: 0
    assert synops(a, w) == 5
    hidden = [torch.zeros(3, 2, 2)]
    hidden[0][0, 0, 1] = 1  # hidden neuron 1 -> readout (2 nonzero) and recurrent (1 nonzero)
    w_out = torch.tensor([[0.5, 1.0], [0.0, -1.0]])
    w_rec = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert network_synops(a, hidden, [w, w_out], [w_rec]) == 5 + 2 + 1
    assert network_synops(a, hidden, [w, w_out], [w_rec], convention="emitted") == 5 + 2 + 1
    assert activation_sparsity(hidden) == 11 / 12


def test_synops_conventions_differ_on_the_last_steps_recurrent_spikes():
    """NeuroBench: a recurrent matrix sees s[t-1] at step t, so the last step's spikes never fan out through it;
    "emitted" counts them."""
    x = torch.zeros(3, 1, 1)  # no input events
    w_in = torch.ones(2, 1)
    s = torch.zeros(3, 1, 2)
    s[0, 0, 1] = s[2, 0, 1] = 1  # hidden neuron 1 spikes at t = 0 and at the last step t = 2
    w_out = torch.tensor([[0.5, 1.0], [0.0, -1.0]])  # neuron 1: 2 readout weights
    w_rec = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # neuron 1: 1 recurrent weight
    assert network_synops(x, [s], [w_in, w_out], [w_rec]) == 2 * 2 + 1  # readout both spikes, recurrent t = 0
    assert network_synops(x, [s], [w_in, w_out], [w_rec], convention="neurobench") == 5
    assert network_synops(x, [s], [w_in, w_out], [w_rec], convention="emitted") == 2 * 2 + 2
    assert network_synops(x, [s], [w_in, w_out], [None]) == network_synops(x, [s], [w_in, w_out], []) == 4


def test_synops_conventions_differ_on_delayed_spikes_arriving_after_the_last_step():
    """NeuroBench: a connection of delay d sees x[t - d], so an event at t costs an accumulate on it only if
    t + d <= T - 1; "emitted" counts every event once per nonzero outgoing weight."""
    w = torch.tensor([[1.0, 0.5], [-2.0, 0.0]])  # input 0: 2 outgoing weights, input 1: 1
    x = torch.zeros(4, 1, 2)  # T = 4
    x[1:, 0, 0] = 1  # input 0 at t = 1, 2, 3
    x[3, 0, 1] = 1  # input 1 at t = 3
    axonal = torch.tensor([2, 0])  # input 0 arrives at 3, 4, 5: only t = 1 in time; input 1 at 3
    assert synops(x, w, axonal) == 1 * 2 + 1
    assert network_synops(x, [], [w], [], [axonal]) == 3
    assert network_synops(x, [], [w], [], [axonal], convention="emitted") == synops(x, w) == 3 * 2 + 1
    synaptic = torch.tensor([[0, 1], [3, 0]])  # (0,0): 3 in time; (1,0): 4, 5, 6 late; (0,1): 4 late
    assert synops(x, w, synaptic) == 3
    assert network_synops(x, [], [w], [], [synaptic], convention="emitted") == 7
    assert synops(x, w, torch.tensor([0, 0])) == synops(x, w, torch.zeros(2, 2, dtype=torch.int64)) == 7
    assert synops(x, w, torch.tensor([9, 9])) == 0  # longer than the sequence: nothing arrives
    # a hidden layer's delays apply to its outgoing projection weights[l + 1]; the readout has none
    s = x.clone()
    assert network_synops(x, [s], [w, w], [None], [axonal, axonal]) == 3 + 3
    with pytest.raises(ValueError, match="convention"):
        network_synops(x, [], [w], [], convention="spiketime")
    with pytest.raises(ValueError, match="delays"):
        synops(x, w, torch.tensor([1, 2, 3]))


def test_footprint_by_hand():
    cfg = ModelConfig(hidden=[4], delays="axonal", delay_max=3.0, tau_syn=None)
    net = lif_network(5, 3, cfg, dt=1.0)
    # float: weights 4*5 + 3*4, delays 5, tau_mem 4, readout tau 3, all float32
    assert footprint_bytes(net) == 4 * (20 + 12 + 5 + 4 + 3)
    # int8 weights, float neurons: weights 32 bytes, delays 5 x 4, scales (4 + 3) x 4, taus (4 + 3) x 4
    assert footprint_bytes(net, 8) == 32 + 20 + 28 + 28
    # int4 weights, 16-bit membranes: weights 16 bytes, delays 5 x 1, per neuron a shift (4 + 3) and a 2-byte
    # threshold (4 hidden; the LI readout has none)
    assert footprint_bytes(net, 4, 16) == 16 + 5 + 7 + 8


def test_evaluate_hardware_counts_and_accuracy_are_consistent():
    class Split:
        x = _events(T=30, B=12).transpose(0, 1)
        y = torch.arange(12) % 4

        def __len__(self):
            return 12

    net = _net()
    for spec in (HardwareSpec(8, True, None), HardwareSpec(4, True, 16)):
        res = evaluate_hardware(net, Split(), "max", spec, batch_size=5)
        assert 0 <= res["test_accuracy"] <= 1 and res["synops_per_sample"] > 0
        assert 0 < res["activation_sparsity"] < 1
        assert res["footprint_bytes"] < res["float_footprint_bytes"]
    q = quantized_weights_model(net, HardwareSpec(4, True, None))
    for p in q.projections:
        assert all(len(r.unique()) <= 15 for r in p.effective_weight)


# ------------------------------------------------------------------------------------ CLI and QAT


def test_cli_eval_hardware_writes_the_deployment_metrics(tmp_path, tiny_sets, capsys):
    from spiketime.app.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *tiny_sets, "--set", "model.spike=surrogate_forward"]) == 0
    out = tmp_path / "hw"
    assert (
        main(["eval", "--checkpoint", str(run), "--hardware", "int8", "--membrane-bits", "16", "--out", str(out)]) == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "hard_swap_accuracy",
        "synops_per_sample",
        "activation_sparsity",
        "footprint_bytes",
        "float_accuracy",
    ):
        assert key in m, key
    assert m["hardware"] == "int8" and m["membrane_bits"] == 16
    assert m["synops_per_sample"] > 0 and 0 < m["activation_sparsity"] <= 1
    assert m["footprint_bytes"] < m["float_footprint_bytes"]
    trained = json.loads((run / "metrics.json").read_text())
    assert abs(m["float_accuracy"] - trained["test_accuracy"]) < 1e-9
    # the int64 simulator gives the same accuracy and costs as the batched fixed-point model
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run),
                "--hardware",
                "int8",
                "--membrane-bits",
                "16",
                "--integer",
                "--out",
                str(tmp_path / "int"),
            ]
        )
        == 0
    )
    mi = json.loads((tmp_path / "int" / "metrics.json").read_text())
    assert mi["simulator"] == "integer" and m["simulator"] == "fixed_point"
    for key in (
        "test_accuracy",
        "synops_per_sample",
        "activation_sparsity",
        "hidden_spikes_per_sample",
        "saturated_fraction",
    ):
        assert mi[key] == m[key], key
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--membrane-bits", "16"]) == 2
    assert "--membrane-bits needs --hardware" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--hardware", "int4", "--integer"]) == 2
    assert "--integer needs" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--hardware", "int4", "--perturb", "jitter"]) == 2
    assert main(["eval", "--checkpoint", str(run), "--hardware", "int4", "--membrane-bits", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "--membrane-bits" in err


def test_cli_eval_hardware_refuses_a_gamma_checkpoint(tmp_path, tiny_sets, capsys):
    from spiketime.app.cli.main import main

    run = tmp_path / "gamma"
    assert main(["train", "--out", str(run), *tiny_sets, "--set", "model.type=gamma", "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--hardware", "int8"]) == 2
    err = capsys.readouterr().err
    assert "model.type lif" in err and err.count("\n") == 1


def test_quantisation_aware_training_uses_quantised_weights(tmp_path, tiny_sets):
    from spiketime.app.checkpoints import load_checkpoint, model_from_checkpoint
    from spiketime.app.cli.main import main

    run = tmp_path / "qat"
    assert (
        main(["train", "--out", str(run), *tiny_sets, "--set", "model.weight_bits=4", "--set", "train.epochs=2"]) == 0
    )
    model, cfg = model_from_checkpoint(load_checkpoint(run))
    assert cfg.model.weight_bits == 4
    for p in model.projections:
        w = p.effective_weight.detach()
        assert all(len(r.unique()) <= 15 for r in w)
        assert not torch.equal(w, p.weight.detach())  # the stored float weights stay float (STE training)
    with pytest.raises(ConfigError) as e:
        from spiketime.app import config

        config.load(None, ["model.type=gamma", "model.weight_bits=8"])
    one_line(e, "model.weight_bits")
