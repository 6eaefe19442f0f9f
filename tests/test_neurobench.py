"""SynOps and activation sparsity against a real NeuroBench ``Benchmark`` run (optional: neurobench, snntorch).

NeuroBench measures a network through hooks on its ``nn.Linear`` layers (``SynapticOperations``) and on its
activation modules (``ActivationSparsity``). :class:`StepNet` is a :class:`SpikingNetwork` in that form: every
projection is ``nn.Linear`` layers called once per time step on what reaches them at that step (a delayed
connection's input ``x[t - d]``, a recurrent matrix's ``s[t-1]``), and its neurons step with spiketime's own
``lif_step`` / ``li_step``. Weights on a 1/8 grid and whole-step delays make every current exact in float32
whatever the summation order, so both networks emit the same spikes (asserted), and the counts are compared
exactly: spiketime's default SynOps convention (``"neurobench"``) is NeuroBench's.
"""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spiketime.functional.li import LIState, li_step
from spiketime.functional.lif import lif_init, lif_step
from spiketime.hardware.fixed_point import integer_delays
from spiketime.hardware.metrics import activation_sparsity, network_synops
from spiketime.nn.network import SpikingNetwork

pytest.importorskip("neurobench")
pytest.importorskip("snntorch")  # neurobench.benchmarks imports it

from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import TorchModel


def _linear(w: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.requires_grad_(False).copy_(w)
    return lin


class StepLIF(nn.Module):
    """One hidden LIF layer stepped by :func:`lif_step` (state kept between calls; NeuroBench's activation module)."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        with torch.no_grad():
            self.p = neuron.params()
        self.dt, self.n, self.state = neuron.dt, neuron.n, None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.state = lif_init(current.shape[0], self.n, current)
        s, self.state = lif_step(current, self.state, self.p, self.dt)
        return s


class StepProjection(nn.Module):
    """A whole-step-delay projection as ``nn.Linear`` layers called on what arrives at step ``t``: one Linear
    (no delays; axonal: input ``i`` read at ``t - d_i``), or one per synaptic delay value ``u`` with the weights
    of delay ``u``, fed ``x[t - u]``."""

    def __init__(self, w: torch.Tensor, delays: torch.Tensor | None) -> None:
        super().__init__()
        self.delays = delays
        if delays is not None and delays.dim() == 2:
            self.values = delays.unique().tolist()
            self.linears = nn.ModuleList(_linear(w * (delays == u)) for u in self.values)
        else:
            self.values = [0]
            self.linears = nn.ModuleList([_linear(w)])

    def forward(self, history: list[torch.Tensor]) -> torch.Tensor:
        t, zero = len(history) - 1, torch.zeros_like(history[0])
        if self.delays is None:
            return self.linears[0](history[t])
        if self.delays.dim() == 1:  # axonal
            cols = [history[t - d][:, i] if t >= d else zero[:, i] for i, d in enumerate(self.delays.tolist())]
            return self.linears[0](torch.stack(cols, dim=1))
        return sum(lin(history[t - u] if t >= u else zero) for u, lin in zip(self.values, self.linears))


class StepNet(nn.Module):
    """``net`` stepped in time, in the form NeuroBench hooks; input ``[B, T, N]`` -> readout ``[B, T, C]``.
    ``recorded``: the hidden spike trains ``[T, B, N]`` of every call."""

    def __init__(self, net: SpikingNetwork) -> None:
        super().__init__()
        w = [p.effective_weight.detach() for p in net.projections]
        self.projections = nn.ModuleList(StepProjection(wk, integer_delays(p)) for wk, p in zip(w, net.projections))
        self.recurrents = nn.ModuleList(_linear(r.effective_weight.detach()) for r in net.recurrents)
        self.neurons = nn.ModuleList(StepLIF(n) for n in net.neurons[:-1])
        self.tau_out, self.dt = net.neurons[-1].log_tau.detach().exp(), net.dt
        self.recorded: list[list[torch.Tensor]] = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.transpose(0, 1)
        for n in self.neurons:
            n.state = None
        histories = [[] for _ in self.projections]  # inputs of each projection up to step t
        spikes = [[] for _ in self.neurons]
        out, li = [], LIState(x.new_zeros(x.shape[1], self.projections[-1].linears[0].out_features))
        for t in range(x.shape[0]):
            h = x[t]
            for l, neuron in enumerate(self.neurons):
                histories[l].append(h)
                current = self.projections[l](histories[l])
                if l < len(self.recurrents):
                    prev = spikes[l][-1] if spikes[l] else torch.zeros_like(current)
                    current = current + self.recurrents[l](prev)
                h = neuron(current)
                spikes[l].append(h)
            histories[-1].append(h)
            v, li = li_step(self.projections[-1](histories[-1]), li, self.tau_out, self.dt)
            out.append(v)
        self.recorded.append([torch.stack(s) for s in spikes])
        return torch.stack(out, dim=1)


def _network(delays: str) -> SpikingNetwork:
    """The test network of tests/test_hardware.py (recurrent, sparse), weights rounded to 1/8, whole-step delays."""
    net = SpikingNetwork(
        20,
        4,
        [16, 12],
        1.0,
        delays=delays,
        delay_max=6.0,
        weight_scale=3.0,
        recurrent=True,
        density=0.5,
        backend="reference",
        seed=0,
    )
    with torch.no_grad():
        for m in [*net.projections, *net.recurrents]:
            m.weight.copy_(torch.round(m.weight * 8) / 8)
        for p in net.projections:
            if p.delays is not None:
                p.delays.copy_(torch.round(p.delays))
    return net


def _events(T=40, B=8, n=20, seed=1, counts=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, n, generator=g) < 0.2).float()
    return x + (torch.rand(T, B, n, generator=g) < 0.05).float() * x if counts else x  # counts: some bins hold 2


def _neurobench(net: SpikingNetwork, x: torch.Tensor) -> tuple[dict, list[torch.Tensor]]:
    """NeuroBench's Benchmark on StepNet(net) over the samples of ``x`` [T, B, N], in batches of 3; its results and
    StepNet's hidden spike trains [T, B, N]."""
    step = StepNet(net)
    model = TorchModel(step)
    model.add_activation_module(StepLIF)
    data = DataLoader(TensorDataset(x.transpose(0, 1), torch.zeros(x.shape[1])), batch_size=3)
    results = Benchmark(model, data, [], [], [[], [SynapticOperations, ActivationSparsity]]).run(quiet=True)
    hidden = [torch.cat([rec[l] for rec in step.recorded], dim=1) for l in range(len(step.neurons))]
    return results, hidden


@pytest.mark.parametrize("delays", ["axonal", "synaptic"])
def test_synops_equal_a_neurobench_benchmark_of_the_same_network(delays):
    """Default SynOps == NeuroBench's Effective_ACs (binary events: no MACs); activation sparsity likewise. The
    "emitted" convention is larger by the last step's recurrent fan-out and the late delayed spikes."""
    net = _network(delays)
    x = _events()
    with torch.no_grad():
        _, _, outputs = net.run(x)
    hidden = outputs[:-1]
    results, nb_hidden = _neurobench(net, x)
    for ours, theirs in zip(hidden, nb_hidden):
        assert torch.equal(ours, theirs)
    assert sum(int(h.sum()) for h in hidden) > 100
    weights = [p.effective_weight.detach() for p in net.projections]
    recurrent = [r.effective_weight.detach() for r in net.recurrents]
    steps = [integer_delays(p) for p in net.projections]
    ops = network_synops(x, hidden, weights, recurrent, steps)
    B = x.shape[1]
    so = results["SynapticOperations"]
    assert so["Effective_MACs"] == 0 and so["Effective_ACs"] == ops / B and ops > 0
    assert results["ActivationSparsity"] == pytest.approx(activation_sparsity(hidden), rel=1e-12, abs=0)
    # the other convention: every emitted spike once per outgoing connection
    emitted = network_synops(x, hidden, weights, recurrent, steps, convention="emitted")
    last = [h[-1:] for h in hidden]  # spikes of the last step, through the recurrent weights
    rec_last = sum(int(((s != 0).sum(dim=(0, 1)) * (r != 0).sum(dim=0)).sum()) for s, r in zip(last, recurrent))
    late = sum(_late(a, w, d) for a, w, d in zip([x, *hidden], weights, steps))
    assert rec_last > 0 and late > 0 and emitted == ops + rec_last + late


def _late(a: torch.Tensor, w: torch.Tensor, d: torch.Tensor | None) -> int:
    """Accumulates of the activations ``a`` [T, B, n_in] whose delayed arrival ``t + d`` is after step T - 1,
    by enumeration."""
    if d is None:
        return 0
    T, n = a.shape[0], 0
    d = d.expand(w.shape) if d.dim() == 1 else d
    for j, i in (w != 0).nonzero().tolist():
        n += int((a[max(T - int(d[j, i]), 0) :, :, i] != 0).sum())
    return n


def test_multi_event_bins_are_neurobench_macs_and_synops_are_their_sum():
    """An input step with a bin of 2 events is not binary: NeuroBench files that layer call under Effective_MACs.
    Our SynOps count one accumulate per nonzero bin either way: Effective_ACs + Effective_MACs."""
    net = _network("axonal")
    x = _events(counts=True)
    assert int((x > 1).sum()) > 0
    with torch.no_grad():
        _, _, outputs = net.run(x)
    hidden = outputs[:-1]
    results, nb_hidden = _neurobench(net, x)
    for ours, theirs in zip(hidden, nb_hidden):
        assert torch.equal(ours, theirs)
    ops = network_synops(
        x,
        hidden,
        [p.effective_weight.detach() for p in net.projections],
        [r.effective_weight.detach() for r in net.recurrents],
        [integer_delays(p) for p in net.projections],
    )
    so = results["SynapticOperations"]
    assert so["Effective_MACs"] > 0 and so["Effective_ACs"] > 0
    assert so["Effective_ACs"] + so["Effective_MACs"] == pytest.approx(ops / x.shape[1], rel=1e-12, abs=0)
