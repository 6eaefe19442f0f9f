"""The peers of ``spiketime bench`` (module docstring of :mod:`spiketime.app.bench`): snnTorch, SpikingJelly and Norse
versions of the benchmark network, with the same weights and neuron, and the candidates (rows) each gives."""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

DT, TAU_MEM, TAU_OUT, THETA = 1.0, 10.0, 10.0, 1.0
PEERS = ("snntorch", "spikingjelly", "norse")
SPIKETIME, FLOOR = "spiketime", "matmul floor"


class Skip(Exception):
    """A candidate that cannot run here (missing package, no such backend on this device, ...)."""


@dataclass
class Candidate:
    name: str  # row label: "spiketime", "snntorch", "spikingjelly/cuda", ...
    library: str
    backend: str
    surrogate: str
    notes: str = ""
    model: nn.Module | None = None
    skip: str | None = None  # reason, when it cannot run
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


def _decays() -> tuple[float, float]:
    """beta of the hidden layers and of the readout, exactly as spiketime computes them (float32)."""
    from spiketime.functional.lif import decay

    b = decay(torch.tensor(math.log(TAU_MEM)).exp(), DT).item()
    bo = decay(torch.tensor(math.log(TAU_OUT)).exp(), DT).item()
    return b, bo


def _linear(w: Tensor) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


class SnnTorchModel(nn.Module):
    """snnTorch as its tutorials write it: a per-step loop over ``Linear`` and ``snn.Leaky``."""

    library = "snntorch"

    def __init__(self, weights: list[Tensor], beta: float, beta_out: float) -> None:
        super().__init__()
        import snntorch as snn

        # snn.Leaky adds the input current unscaled: fold spiketime's (1 - beta) into the weights.
        scales = [1.0 - beta] * (len(weights) - 1) + [1.0 - beta_out]
        self.fcs = nn.ModuleList(_linear(w * s) for w, s in zip(weights, scales))
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=beta, threshold=THETA, reset_mechanism="subtract") for _ in weights[:-1]
        )
        self.readout = snn.Leaky(beta=beta_out, threshold=THETA, reset_mechanism="none")

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        mems = [lif.reset_mem() for lif in self.lifs]
        mem_out = self.readout.reset_mem()
        spikes: list[list[Tensor]] = [[] for _ in self.lifs]
        out = []
        for t in range(x.shape[0]):
            h = x[t]
            for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                h, mems[k] = lif(fc(h), mems[k])
                spikes[k].append(h)
            _, mem_out = self.readout(self.fcs[-1](h), mem_out)
            out.append(mem_out)
        return [torch.stack(s) for s in spikes], torch.stack(out).max(dim=0).values

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)[1]


class SpikingJellyModel(nn.Module):
    """SpikingJelly in multi-step mode: ``layer.Linear`` and ``neuron.LIFNode`` over the whole sequence."""

    library = "spikingjelly"

    def __init__(self, weights: list[Tensor], beta: float, beta_out: float) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer, neuron

        mods: list[nn.Module] = []
        for w in weights[:-1]:
            lin = layer.Linear(w.shape[1], w.shape[0], bias=False, step_mode="m")
            with torch.no_grad():
                lin.weight.copy_(w)
            # decay_input: H = V + (X - V) / tau = beta V + (1 - beta) X with tau = 1 / (1 - beta)
            mods += [
                lin,
                neuron.LIFNode(
                    tau=1.0 / (1.0 - beta), decay_input=True, v_threshold=THETA, v_reset=None, step_mode="m"
                ),
            ]
        lin = layer.Linear(weights[-1].shape[1], weights[-1].shape[0], bias=False, step_mode="m")
        with torch.no_grad():
            lin.weight.copy_(weights[-1])
        mods += [lin, neuron.NonSpikingLIFNode(tau=1.0 / (1.0 - beta_out), decode="max-mem")]
        self.net = nn.Sequential(*mods)

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        from spikingjelly.activation_based import functional, neuron

        functional.reset_net(self.net)
        spikes, h = [], x
        for m in self.net:
            h = m(h)
            if isinstance(m, neuron.LIFNode):
                spikes.append(h)
        return spikes, h

    def forward(self, x: Tensor) -> Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.net)
        return self.net(x)


class NorseModel(nn.Module):
    """Norse's boxed LIF (no synaptic current) stepped over time, ``LIBoxCell`` readout."""

    library = "norse"

    def __init__(self, weights: list[Tensor], beta: float, beta_out: float, device: torch.device) -> None:
        super().__init__()
        from norse.torch import LIBoxCell, LIBoxParameters, LIFBoxCell, LIFBoxParameters
        from norse.torch.functional.reset import reset_subtract

        def t(v: float) -> Tensor:
            return torch.tensor(v, device=device)

        p = LIFBoxParameters(
            tau_mem_inv=t(1.0 - beta), v_leak=t(0.0), v_th=t(THETA), v_reset=t(0.0), reset_method=reset_subtract
        )
        self.fcs = nn.ModuleList(_linear(w) for w in weights)
        self.lifs = nn.ModuleList(LIFBoxCell(p, dt=DT) for _ in weights[:-1])
        self.readout = LIBoxCell(LIBoxParameters(tau_mem_inv=t(1.0 - beta_out), v_leak=t(0.0)), dt=DT)

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        states: list[Any] = [None] * len(self.lifs)
        s_out = None
        spikes: list[list[Tensor]] = [[] for _ in self.lifs]
        out = []
        for t in range(x.shape[0]):
            h = x[t]
            for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                h, states[k] = lif(fc(h), states[k])
                spikes[k].append(h)
            v, s_out = self.readout(self.fcs[-1](h), s_out)
            out.append(v)
        return [torch.stack(s) for s in spikes], torch.stack(out).max(dim=0).values

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)[1]


def _reason(e: BaseException) -> str:
    if isinstance(e, (ImportError, ModuleNotFoundError)):
        return f"not installed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = f"{type(e).__name__}: {msg}" if not isinstance(e, Skip) else msg
    return msg if len(msg) <= 160 else msg[:157] + "..."


@contextlib.contextmanager
def _sj_implementation(name: str, device: torch.device) -> Iterator[None]:
    """Bind SpikingJelly's LIF op to implementation ``name`` on ``device`` (what ``SJ_LIF_CUDA_IMPLEMENTATION``
    does at import time), check that it is the one selected, and restore the previous binding afterwards."""
    from spikingjelly._ops import lif as sj_lif
    from spikingjelly.activation_based.functional import neuron_implementation

    sel = sj_lif._selection
    old = (sel._requested, dict(sel._selections), dict(sel._compiled_selections))
    sel._requested = name
    sel._selections.clear()
    sel._compiled_selections.clear()
    try:
        try:
            got = neuron_implementation("lif", device)["implementation"]
        except Exception as e:  # noqa: BLE001 - no such implementation here
            raise Skip(f"{name} implementation unavailable: {_reason(e)}") from None
        if got != name:
            raise Skip(f"spikingjelly bound {got}, not {name}")
        yield
    finally:
        sel._requested = old[0]
        sel._selections.clear()
        sel._selections.update(old[1])
        sel._compiled_selections.clear()
        sel._compiled_selections.update(old[2])


def _peer_candidates(
    peer: str, weights: list[Tensor], device: torch.device, precision: str = "fp32"
) -> list[Candidate]:
    beta, beta_out = _decays()
    if peer == "snntorch":
        c = Candidate(
            "snntorch", "snntorch", "torch", "ATan(alpha=2) [snnTorch default]", "per-step loop; reset detached"
        )
        try:
            importlib.import_module("snntorch")
            c.model = SnnTorchModel(weights, beta, beta_out).to(device)
        except Exception as e:  # noqa: BLE001 - a failing peer is a skipped row
            c.skip = _reason(e)
        return [c]
    if peer == "norse":
        c = Candidate(
            "norse",
            "norse",
            "torch",
            "SuperSpike 1/(|x|+1)^2 [Norse default 'super']",
            "per-step loop, LIFBoxCell; reset before decay",
        )
        try:
            importlib.import_module("norse.torch")
            c.model = NorseModel(weights, beta, beta_out, device).to(device)
        except Exception as e:  # noqa: BLE001
            c.skip = _reason(e)
        return [c]
    if peer == "spikingjelly":
        # On CUDA SpikingJelly binds one of its implementations per process; each gets a row. Its kernels need
        # fp32 neuron state: under bf16/fp16 autocast the state follows the input dtype and it runs its Torch
        # reference whatever is asked, so that case is one "auto" row (what its users get).
        notes = "multi-step; reset before decay, fires at >="
        if device.type != "cuda":
            impls = ["torch"]
        elif precision == "fp32":
            impls = ["torch", "cuda", "triton"]
        else:
            impls, notes = ["auto"], notes + f"; {precision} state: its Torch reference"
        cands = [
            Candidate(f"spikingjelly/{b}", "spikingjelly", b, "Sigmoid(alpha=4) [SpikingJelly default]", notes)
            for b in impls
        ]
        try:
            importlib.import_module("spikingjelly.activation_based.neuron")
            model = SpikingJellyModel(weights, beta, beta_out).to(device)
        except Exception as e:  # noqa: BLE001
            for c in cands:
                c.skip = _reason(e)
            return cands
        for c in cands:
            c.model = model
            if device.type == "cuda" and c.backend != "auto":
                c.context = lambda b=c.backend: _sj_implementation(b, device)
        return cands
    raise ValueError(f"unknown peer {peer!r}")
