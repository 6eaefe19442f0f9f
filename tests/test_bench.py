"""spiketime bench: rows and timings, exact saved-tensor accounting, skipped peers, CLI, and the same network in
every library (spiketime's hidden spikes equal snnTorch's)."""

import json
import sys

import pytest
import torch

from spiketime.app.bench import LEARNERS, build_spiketime, make_inputs, run_bench, saved_tensor_bytes
from spiketime.app.bench_peers import FLOOR, SPIKETIME, NorseModel, SnnTorchModel, SpikingJellyModel, _decays
from spiketime.app.bench_report import format_table
from spiketime.app.cli.main import build_parser, main

TINY = dict(batch=2, hidden=(8, 8), repeats=1, warmup=0)


def _by_name(rows, name, T=None):
    return next(r for r in rows if r["name"] == name and (T is None or r["T"] == T))


def test_rows_for_spiketime_and_floor_with_positive_times():
    rows = run_bench([5], peers=[], **TINY)
    assert [r["name"] for r in rows] == [SPIKETIME, FLOOR]
    for r in rows:
        assert r["status"] == "ok" and r["ms"] > 0 and r["times_ms"] and all(t > 0 for t in r["times_ms"])
        assert r["T"] == 5 and r["batch"] == 2 and r["device"] == "cpu" and r["learner"] == "bptt"
        assert r["saved_bytes"] > 0 and r["saved_bytes_per_step"] == r["saved_bytes"] / 5
    spk, floor = rows
    assert spk["ratio_spiketime"] == 1.0 and floor["ratio_floor"] == 1.0
    assert spk["ratio_floor"] == pytest.approx(spk["ms"] / floor["ms"])
    assert floor["ratio_spiketime"] == pytest.approx(floor["ms"] / spk["ms"])
    table = format_table(rows)
    assert "ms/step" in table and "vs floor" in table and SPIKETIME in table and FLOOR in table


def test_saved_tensor_bytes_counts_each_storage_once_and_skips_excluded():
    a = torch.randn(100, requires_grad=True)
    b = torch.randn(100, requires_grad=True)

    def step():
        (a * b).sum().backward()  # mul saves a and b

    assert saved_tensor_bytes(step, []) == 2 * 100 * 4
    assert saved_tensor_bytes(step, [a]) == 100 * 4
    x = torch.randn(2, 50)
    w = torch.randn(50, requires_grad=True)

    def views():
        ((x[0] * w).sum() + (x[1] * w).sum()).backward()  # two views of one storage, w twice

    assert saved_tensor_bytes(views, [w]) == x.numel() * 4


def test_saved_memory_grows_linearly_with_T():
    hidden, batch = (16, 16), 4
    rows = run_bench([10, 20, 30], peers=[], batch=batch, hidden=hidden, repeats=1, warmup=0)
    s10, s20, s30 = (_by_name(rows, SPIKETIME, T)["saved_bytes"] for T in (10, 20, 30))
    assert s20 / s10 == pytest.approx(2.0, rel=0.1)  # about 2x: BPTT keeps every step
    assert s30 - s20 == s20 - s10  # exactly linear in T (a constant for the loss and initial state)
    # BPTT through a spike needs at least one [B, N] fp32 tensor per hidden layer and step (the surrogate's input)
    assert (s20 - s10) / 10 >= batch * sum(hidden) * 4
    # the floor keeps exactly the inputs of layers 2 and 3 (the input batch and the weights are excluded)
    for T in (10, 20, 30):
        assert _by_name(rows, FLOOR, T)["saved_bytes"] == T * batch * sum(hidden) * 4


def test_missing_peer_is_a_skipped_row(monkeypatch):
    monkeypatch.setitem(sys.modules, "norse", None)
    monkeypatch.setitem(sys.modules, "norse.torch", None)
    rows = run_bench([5], peers=["norse"], **TINY)
    r = _by_name(rows, "norse")
    assert r["status"] == "skipped" and r["ms"] is None and "not installed" in r["reason"]
    assert _by_name(rows, SPIKETIME)["status"] == "ok"
    assert "skipped: not installed" in format_table(rows)


def test_failing_peer_is_a_skipped_row(monkeypatch):
    pytest.importorskip("snntorch")

    def boom(self, x):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(SnnTorchModel, "forward", boom)
    rows = run_bench([5], peers=["snntorch"], **TINY)
    r = _by_name(rows, "snntorch")
    assert r["status"] == "skipped" and r["reason"] == "RuntimeError: kaput"


def test_cli_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    code = main(
        [
            "bench",
            "--device",
            "cpu",
            "--T",
            "3,4",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--peers",
            "none",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0 and "ms/step" in stdout and str(out) in stdout
    data = json.loads(out.read_text())
    assert data["bench"]["T"] == [3, 4] and data["bench"]["batch"] == 2 and data["bench"]["hidden"] == [256, 256]
    assert {"torch", "cpu", "torch_threads", "git_commit", "versions", "peers"} <= set(data["device_info"])
    assert [(r["name"], r["T"]) for r in data["rows"]] == [(SPIKETIME, 3), (FLOOR, 3), (SPIKETIME, 4), (FLOOR, 4)]
    assert all(r["ms"] > 0 for r in data["rows"])
    assert not list(tmp_path.glob("sub/.*.tmp"))  # written atomically


@pytest.mark.parametrize("arg", ["abc", "0", "5,,-1", ""])
def test_bad_T_is_a_one_line_error(arg, capsys):
    code = main(["bench", "--T", arg, "--peers", "none"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--T" in err and err.startswith("spiketime: error:")


def test_bad_peer_is_a_one_line_error(capsys):
    assert main(["bench", "--T", "5", "--peers", "snntorch,brian2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "brian2" in err


def test_learner_choices_come_from_the_registry():
    args = build_parser().parse_args(["bench"])
    assert args.learner == "bptt" and "bptt" in LEARNERS


def _nets(T=20, batch=8, hidden=(64, 64)):
    spk, _ = build_spiketime(hidden, "none", seed=0)
    x, _ = make_inputs(T, batch, 700, 20, torch.device("cpu"), seed=0)
    return spk, [p.weight.detach() for p in spk.net.projections], x


def test_spiketime_hidden_spikes_equal_snntorch():
    """Same weights, inputs, beta, threshold and reset: snnTorch's Leaky (mem = beta mem + I - theta reset) fed
    with I = (1 - beta) W x is spiketime's LIF exactly, so every hidden spike and the readout must agree."""
    pytest.importorskip("snntorch")
    spk, weights, x = _nets()
    beta, beta_out = _decays()
    peer = SnnTorchModel(weights, beta, beta_out)
    with torch.no_grad():
        h_spk, sc_spk = spk.run(x)
        h_peer, sc_peer = peer.run(x)
    for a, b in zip(h_spk, h_peer):
        assert a.sum() > 10  # both layers fire: the comparison is not vacuous
        assert torch.equal(a, b)
    torch.testing.assert_close(sc_peer, sc_spk, atol=1e-5, rtol=1e-5)


def test_spikingjelly_and_norse_compute_the_same_network():
    """Both reset before the next decay (reset beta*theta in spiketime's convention): they agree with each other
    exactly and with spiketime on most spikes."""
    pytest.importorskip("spikingjelly.activation_based.neuron")
    pytest.importorskip("norse.torch")
    spk, weights, x = _nets()
    beta, beta_out = _decays()
    with torch.no_grad():
        h_spk, _ = spk.run(x)
        h_sj, sc_sj = SpikingJellyModel(weights, beta, beta_out).run(x)
        h_no, sc_no = NorseModel(weights, beta, beta_out, torch.device("cpu")).run(x)
    for a, b, c in zip(h_sj, h_no, h_spk):
        assert torch.equal(a.float(), b.float())
        assert (a.float() == c).float().mean() > 0.9
    torch.testing.assert_close(sc_sj, sc_no, atol=1e-5, rtol=1e-5)


def test_spikingjelly_implementation_binding_is_restored():
    """The CUDA rows force SpikingJelly's LIF implementation; the binding must be checked and put back."""
    pytest.importorskip("spikingjelly.activation_based.neuron")
    from spikingjelly._ops import lif as sj_lif

    from spiketime.app.bench_peers import Skip, _sj_implementation

    before = sj_lif._selection._requested
    with pytest.raises(Skip, match="not torch"):  # on CPU it binds its Torch reference, not the CUDA "torch" op
        with _sj_implementation("torch", torch.device("cpu")):
            pass
    assert sj_lif._selection._requested == before


def test_plot_script_draws_the_json(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    out = tmp_path / "b.json"
    assert (
        main(
            [
                "bench",
                "--device",
                "cpu",
                "--T",
                "3,5",
                "--batch",
                "2",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--peers",
                "none",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "plot.py"
    spec = importlib.util.spec_from_file_location("bench_plot", path)
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    png = tmp_path / "img" / "perf.png"
    assert plot.main([str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.main([str(tmp_path / "missing.json"), "--out", str(png)]) == 2


def test_out_of_memory_is_a_row_other_spiketime_errors_propagate(monkeypatch):
    from spiketime.app.bench import SpiketimeModel

    def oom(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr(SpiketimeModel, "forward", oom)
    rows = run_bench([5], peers=[], **TINY)
    spk, floor = _by_name(rows, SPIKETIME), _by_name(rows, FLOOR)
    assert spk["status"] == "skipped" and spk["reason"] == "out of memory"
    assert floor["status"] == "ok" and floor["ratio_spiketime"] is None and floor["ratio_floor"] == 1.0

    def bug(self, x):
        raise ValueError("a bug in spiketime")

    monkeypatch.setattr(SpiketimeModel, "forward", bug)
    with pytest.raises(ValueError, match="a bug"):
        run_bench([5], peers=[], **TINY)
