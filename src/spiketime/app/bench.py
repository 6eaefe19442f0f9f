"""``spiketime bench``: time one training step of a 700-256-256-20 LIF network against snnTorch, SpikingJelly, Norse.

What is measured (per library/backend and per sequence length ``T``): one learner step (``zero_grad``, forward,
loss, backward; no optimiser step) of ``Linear 700->256, LIF, Linear 256->256, LIF, Linear 256->20, LI readout``
with loss = cross-entropy on the max over time of the readout, on random binary input spikes ``[T, B, 700]`` of
density 0.02 (SHD-like, fixed seed). Every library gets the same weights, the same input and the same neuron
(dt = 1 ms, tau_mem = tau_out = 10 ms, i.e. beta = exp(-1/10) per step; threshold 1; reset by subtraction):

* **spiketime** -- :class:`spiketime.nn.network.SpikingNetwork` (``tau_syn=None``, ``learn_tau=False``,
  ``readout="li"``): ``v[t] = beta v[t-1] + (1-beta) W x[t] - theta s[t-1]``, ``s[t] = H(v[t] - theta)``.
  Surrogate: FastSigmoid (SuperSpike, alpha 5). The only candidate that can have delays (``--delays``).
* **snnTorch** -- ``snn.Leaky(beta, threshold=1, reset_mechanism="subtract")`` stepped in a Python loop as its
  tutorials write it (``Linear`` per step), readout ``snn.Leaky(reset_mechanism="none")``:
  ``mem = beta mem + I - theta reset``. With ``I = (1-beta) W x`` (the weights are copied scaled by ``1-beta``)
  this is exactly spiketime's neuron: the hidden spikes are identical (tested). Surrogate: ATan (alpha 2);
  snnTorch detaches the reset.
* **SpikingJelly** -- ``layer.Linear`` + ``neuron.LIFNode(tau=1/(1-beta), decay_input=True, v_reset=None)`` in
  step mode ``"m"`` (whole sequence per call), readout ``neuron.NonSpikingLIFNode(decode="max-mem")``:
  ``H = beta V + (1-beta) X``, ``V = H - theta S``: it subtracts the threshold *before* the next decay, so its
  reset is ``beta * theta`` in spiketime's convention, and it fires at ``H >= theta`` (spiketime: ``>``).
  Same cost, slightly different spikes. Surrogate: Sigmoid (alpha 4). One row per implementation it has on
  the device: ``torch`` (CPU: the Torch reference under autograd); on CUDA also ``cuda`` (its compiled kernels)
  and ``triton`` when they load (forced like ``SJ_LIF_CUDA_IMPLEMENTATION`` does). Under bf16/fp16 autocast its
  neuron state is low-precision and it always runs its Torch reference: one row ``spikingjelly/auto``.
  (SpikingJelly 2.0 has no CuPy backend any more.)
* **Norse** -- ``LIFBoxCell`` (LIF without synaptic current; ``tau_mem_inv * dt = 1-beta``,
  ``reset_method=reset_subtract``) stepped in a Python loop, readout ``LIBoxCell``. Euler step
  ``v + (1-beta)(i - v)`` equals ``beta v + (1-beta) i``; the reset is applied in the step that fires, like
  SpikingJelly. Surrogate: SuperSpike ``1/(|x|+1)^2`` (``method="super"``; Norse ignores its alpha).
* **matmul floor** -- the three input matmuls for all time steps at once (``[T*B, 700] @ [700, 256]`` etc.),
  forward and backward (weight gradients, and input gradients of layers 2 and 3): what any BPTT step costs at
  least.

Timing: ``warmup`` untimed steps, then the median of ``repeats`` timed steps (``time.perf_counter``, with
``torch.cuda.synchronize`` on CUDA). Memory: the bytes of tensors saved for backward during one step, measured
with :func:`torch.autograd.graph.saved_tensors_hooks`, each storage counted once, leaving out the parameters and
the input batch (they exist whatever the library does); on CUDA also ``torch.cuda.max_memory_allocated`` of one
step. A peer that is not installed or fails is a row ``skipped: <reason>``, never a crash.

Learners: :data:`LEARNERS` maps a name to a step function ``(model, x, y, amp) -> None``; adding one is one entry.
A learner may raise :class:`Skip` for models it cannot train (e.g. a peer). ``online`` (:class:`OnlineStep`) has no
backward pass: its memory columns report the learner's state bytes (``memory_bytes``) instead of saved tensors.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spiketime.app.bench_peers import (
    DT,
    FLOOR,
    PEERS,
    SPIKETIME,
    TAU_MEM,
    TAU_OUT,
    THETA,
    Candidate,
    Skip,
    _peer_candidates,
    _reason,
)
from spiketime.app.config import ConfigError

if TYPE_CHECKING:
    from spiketime.app.config import ModelConfig

N_IN, HIDDEN, N_OUT = 700, (256, 256), 20
DENSITY = 0.02
# spiketime's default init (weight_scale 1) leaves this network almost silent on 2 % input (layer 2 never
# fires); 3 gives hidden rates of about 4 % and 6 %, so that the spike comparison between libraries means
# something. The timings of dense implementations do not depend on it.
WEIGHT_SCALE = 3.0
DEVICES = ("cpu", "cuda")
DELAYS = ("none", "axonal", "synaptic")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------- learners


def bptt_step(model: nn.Module, x: Tensor, y: Tensor, amp: Callable[[], Any]) -> None:
    """One BPTT step: ``zero_grad``, forward, cross-entropy on the max over time of the readout, backward."""
    model.zero_grad(set_to_none=True)
    with amp():
        scores = model(x)
        loss = F.cross_entropy(scores.float(), y)
    loss.backward()


class OnlineStep:
    """One online step (:class:`spiketime.learning.online.OnlineLearner`, symmetric feedback, gradient put into
    ``p.grad`` at the end, no optimiser step) on the ``per_step`` loss: the forward pass step by step with the
    eligibility traces, no backward pass. spiketime's network only (peers: skipped rows).

    Memory: it saves no tensors for backward, so the bench reports :attr:`memory_bytes` instead, the bytes of the
    learner's state after the step (traces, delay ring buffers, neuron states, accumulators), constant in ``T``."""

    memory_note = "memory = online learner state, not saved tensors"

    def __init__(self) -> None:
        self.last_state_bytes: int | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, amp: Callable[[], Any]) -> None:
        from spiketime.learning.online import OnlineLearner

        if getattr(model, "library", None) != SPIKETIME:
            raise Skip("the online learner trains spiketime's network only")
        if amp is not contextlib.nullcontext:
            raise Skip("the online learner runs in fp32")
        model.zero_grad(set_to_none=True)
        learner = OnlineLearner(model.net)
        learner.run(x, y)
        self.last_state_bytes = learner.state_bytes()
        learner.release()

    def memory_bytes(self, step: Callable[[], None]) -> int:
        """The state bytes of the last step (running ``step`` once if there was none)."""
        if self.last_state_bytes is None:
            step()
        return int(self.last_state_bytes)


LEARNERS: dict[str, Callable[[nn.Module, Tensor, Tensor, Callable[[], Any]], None]] = {
    "bptt": bptt_step,
    "online": OnlineStep(),
}


# --------------------------------------------------------------------------------------------- models
# Every model maps x [T, B, n_in] to class scores [B, C] (max over time of its readout) and has
# ``run(x) -> (hidden spikes per layer [T, B, N], scores)`` for the spike comparison.


class SpiketimeModel(nn.Module):
    library = SPIKETIME

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.net(x)
        return y.max(dim=0).values

    def run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        y, _, outs = self.net.run(x)
        return outs[:-1], y.max(dim=0).values


def build_spiketime(
    hidden: tuple[int, ...], delays: str, seed: int, n_in: int = N_IN, n_out: int = N_OUT, connectivity: float = 1.0
) -> tuple[SpiketimeModel, ModelConfig]:
    from spiketime.app.config import ModelConfig
    from spiketime.app.factories import lif_network

    cfg = ModelConfig(
        hidden=list(hidden),
        delays=delays,
        tau_mem=TAU_MEM,
        tau_syn=None,
        learn_tau=False,
        tau_out=TAU_OUT,
        reset="subtract",
        theta=THETA,
        readout="li",
        weight_scale=WEIGHT_SCALE,
        density=connectivity,
    )
    net = lif_network(n_in, n_out, cfg, dt=DT, seed=seed)
    return SpiketimeModel(net), cfg


# --------------------------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _storage_key(t: Tensor) -> tuple[str, int]:
    return str(t.device), t.untyped_storage().data_ptr()


def saved_tensor_bytes(step: Callable[[], None], exclude: list[Tensor]) -> int:
    """Bytes of the distinct storages saved for backward while ``step`` runs (storages of ``exclude`` left out).

    Every packed tensor is kept referenced until ``step`` returns, so that no storage address is reused
    (and counted twice) during the step."""
    excluded = {_storage_key(t) for t in exclude}
    seen: dict[tuple[str, int], int] = {}
    keep: list[Tensor] = []

    def pack(t: Tensor) -> Tensor:
        keep.append(t)
        try:
            key = _storage_key(t)
            nbytes = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # no plain storage (sparse, nested, ...)
            key, nbytes = ("id", id(t)), t.numel() * t.element_size()
        if key not in excluded:
            seen[key] = max(seen.get(key, 0), nbytes)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    keep.clear()
    return sum(seen.values())


def _cuda_peak(step: Callable[[], None], device: torch.device) -> int:
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    _sync(device)
    return torch.cuda.max_memory_allocated(device)


def make_inputs(T: int, batch: int, n_in: int, n_out: int, device: torch.device, seed: int) -> tuple[Tensor, Tensor]:
    """Binary input spikes [T, B, n_in] of density 0.02 and class labels [B] (seeded, the same for every library)."""
    g = torch.Generator().manual_seed(seed + T)
    x = (torch.rand(T, batch, n_in, generator=g) < DENSITY).float()
    y = torch.randint(0, n_out, (batch,), generator=g)
    return x.to(device), y.to(device)


class MatmulFloor:
    """The three input matmuls for all steps at once, forward and backward (weights, and inputs of layers 2-3)."""

    def __init__(self, weights: list[Tensor], x: Tensor, amp: Callable[[], Any], seed: int) -> None:
        T, B, n_in = x.shape
        g = torch.Generator().manual_seed(seed + 1)
        self.ws = [w.detach().clone().requires_grad_(True) for w in weights]
        self.inputs = [x.reshape(T * B, n_in)] + [
            (torch.rand(T * B, w.shape[1], generator=g) < 0.05).float().to(x.device).requires_grad_(True)
            for w in weights[1:]
        ]
        self.amp = amp
        with torch.no_grad(), amp():
            self.grads = [torch.ones_like(h @ w.t()) for h, w in zip(self.inputs, self.ws)]

    def step(self) -> None:
        for t in (*self.ws, *self.inputs[1:]):
            t.grad = None
        with self.amp():
            outs = [h @ w.t() for h, w in zip(self.inputs, self.ws)]
        torch.autograd.backward(outs, self.grads)


# --------------------------------------------------------------------------------------------- the bench


def parse_T(text: str) -> list[int]:
    """``"250,1000"`` -> ``[250, 1000]``; anything else is a one-line :class:`ConfigError`."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--T {text!r}: expected comma-separated positive integers, e.g. 250,1000,3000")
    return values


def parse_peers(text: str) -> list[str]:
    """``"snntorch,norse"`` -> the list; ``"none"`` or ``""`` -> no peers."""
    names = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    if names in ([], ["none"]):
        return []
    bad = [p for p in names if p not in PEERS]
    if bad:
        raise ConfigError(f"--peers: unknown {', '.join(bad)}; expected a comma list of {','.join(PEERS)} (or none)")
    return list(dict.fromkeys(names))


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: expected cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda: CUDA is not available (torch {torch.__version__})")
    return torch.device(name)


def _amp(device: torch.device, precision: str) -> Callable[[], Any]:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _row(
    c: Candidate, T: int, batch: int, delays: str, precision: str, learner: str, device: torch.device, **kw: Any
) -> dict[str, Any]:
    row = {
        "name": c.name,
        "library": c.library,
        "backend": c.backend,
        "T": T,
        "batch": batch,
        "delays": delays if c.library == SPIKETIME else "none",
        "precision": precision,
        "learner": learner,
        "device": device.type,
        "surrogate": c.surrogate,
        "notes": c.notes,
        "status": "ok",
        "reason": None,
        "ms": None,
        "ms_min": None,
        "times_ms": [],
        "ratio_spiketime": None,
        "ratio_floor": None,
        "saved_bytes": None,
        "saved_bytes_per_step": None,
        "cuda_peak_bytes": None,
        "hidden_rate": None,
        "spike_agreement": None,
    }
    row.update(kw)
    return row


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_bench(
    T_list: list[int],
    batch: int | None = None,
    device: str = "cpu",
    delays: str = "none",
    learner: str = "bptt",
    precision: str = "fp32",
    peers: list[str] | tuple[str, ...] = PEERS,
    repeats: int = 5,
    warmup: int = 2,
    hidden: tuple[int, ...] = HIDDEN,
    n_in: int = N_IN,
    n_out: int = N_OUT,
    seed: int = 0,
    progress: bool = False,
    memory: bool = True,
    connectivity: float = 1.0,
) -> list[dict[str, Any]]:
    """Measure every candidate at every ``T``; returns one row (a dict) per candidate and ``T``.
    ``connectivity`` is spiketime's ``model.density`` (fixed sparse hidden projections); the peers get the
    same weights, zeros included, as dense matrices.

    Rows of skipped peers have ``status == "skipped"`` and a ``reason``; spiketime and the matmul floor always
    run (their errors propagate)."""
    from spiketime.progress import progress_bar

    dev = resolve_device(device) if isinstance(device, str) else device
    if delays not in DELAYS:
        raise ConfigError(f"--delays {delays!r}: expected one of {', '.join(DELAYS)}")
    if learner not in LEARNERS:
        raise ConfigError(f"--learner {learner!r}: expected one of {', '.join(LEARNERS)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    batch = batch if batch is not None else (256 if dev.type == "cuda" else 32)
    if not 0 < connectivity <= 1:
        raise ConfigError(f"--connectivity {connectivity!r}: expected a fraction in (0, 1] of hidden connections")
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ConfigError("--batch and --repeats must be >= 1, --warmup >= 0")
    amp, learn = _amp(dev, precision), LEARNERS[learner]

    spk, cfg = build_spiketime(tuple(hidden), delays, seed, n_in, n_out, connectivity)
    spk = spk.to(dev)
    weights = [p.weight.detach() for p in spk.net.projections]
    notes = (
        f"delays={delays}"
        + (f"; connectivity={connectivity}" if connectivity < 1 else "")
        + (f"; {learn.memory_note}" if hasattr(learn, "memory_note") else "")
    )
    cands = [
        Candidate(
            SPIKETIME, SPIKETIME, "torch", f"{spk.net.neurons[0].surrogate!r} [spiketime default]", notes, model=spk
        )
    ]
    for peer in peers:
        cands += _peer_candidates(peer, weights, dev, precision)
    floor_c = Candidate(FLOOR, FLOOR, "torch", "-", "3 matmuls over T*B rows, fwd+bwd")

    rows: list[dict[str, Any]] = []
    bar = progress_bar(progress, "bench", len(T_list) * (len(cands) + 1), "run", leave=False)
    try:
        for T in T_list:
            x, y = make_inputs(T, batch, n_in, n_out, dev, seed)
            T_rows: list[dict[str, Any]] = []
            ref_spikes: list[Tensor] | None = None
            floor = MatmulFloor(weights, x, amp, seed)
            for c in [floor_c, *cands]:
                bar.set_postfix_str(f"T={T} {c.name}")
                if c.skip is not None:
                    T_rows.append(_row(c, T, batch, delays, precision, learner, dev, status="skipped", reason=c.skip))
                    bar.update()
                    continue
                if c is floor_c:
                    step, exclude = floor.step, [x, *floor.ws]
                else:
                    model = c.model

                    def step(m: nn.Module = model, x: Tensor = x, y: Tensor = y) -> None:
                        learn(m, x, y, amp)

                    exclude = [x, *model.parameters()]
                failure = None
                try:
                    with c.context():
                        times = time_step(step, dev, warmup, repeats)
                        if not memory:
                            saved = None
                        elif hasattr(learn, "memory_bytes") and c.library == SPIKETIME:
                            saved = learn.memory_bytes(step)  # a learner without a backward pass: its state
                        else:
                            saved = saved_tensor_bytes(step, exclude)
                        peak = _cuda_peak(step, dev) if dev.type == "cuda" else None
                        extra: dict[str, Any] = {}
                        if c is not floor_c:
                            with torch.no_grad(), amp():
                                hid, _ = c.model.run(x)
                            extra["hidden_rate"] = float(torch.cat([h.float().flatten() for h in hid]).mean())
                            if c.library == SPIKETIME:
                                ref_spikes = hid
                            elif ref_spikes is not None and delays == "none":
                                same = [(a.float() == b.float()).float().flatten() for a, b in zip(hid, ref_spikes)]
                                extra["spike_agreement"] = float(torch.cat(same).mean())
                            del hid
                except Exception as e:  # noqa: BLE001
                    oom = isinstance(e, torch.OutOfMemoryError)
                    if c.library in (SPIKETIME, FLOOR) and not oom and not isinstance(e, Skip):
                        raise
                    failure = "out of memory" if oom else _reason(e)
                if failure is not None:  # out of the except block: its traceback no longer holds tensors
                    T_rows.append(_row(c, T, batch, delays, precision, learner, dev, status="skipped", reason=failure))
                    bar.update()
                    _free(dev)
                    continue
                ms = [1e3 * t for t in times]
                T_rows.append(
                    _row(
                        c,
                        T,
                        batch,
                        delays,
                        precision,
                        learner,
                        dev,
                        ms=statistics.median(ms),
                        ms_min=min(ms),
                        times_ms=ms,
                        saved_bytes=saved,
                        saved_bytes_per_step=None if saved is None else saved / T,
                        cuda_peak_bytes=peak,
                        **extra,
                    )
                )
                if c.library == SPIKETIME:
                    T_rows[-1]["spike_agreement"] = 1.0
                bar.update()
                _free(dev)
            floor = x = y = step = ref_spikes = None  # free this T's tensors before the next T's
            _free(dev)
            ms_spk = next((r["ms"] for r in T_rows if r["library"] == SPIKETIME and r["ms"]), None)
            ms_floor = next((r["ms"] for r in T_rows if r["library"] == FLOOR and r["ms"]), None)
            for r in T_rows:
                if r["ms"] is not None:
                    r["ratio_spiketime"] = None if ms_spk is None else r["ms"] / ms_spk
                    r["ratio_floor"] = None if ms_floor is None else r["ms"] / ms_floor
            # table order: spiketime, peers, floor
            rows += [r for r in T_rows if r["library"] != FLOOR] + [r for r in T_rows if r["library"] == FLOOR]
    finally:
        bar.close()
    return rows


@dataclass
class BenchArgs:
    """What ``spiketime bench`` was asked (stored in the JSON)."""

    T: list[int]
    batch: int
    device: str
    delays: str
    learner: str
    precision: str
    peers: list[str]
    repeats: int
    warmup: int
    hidden: list[int] = field(default_factory=lambda: list(HIDDEN))
    n_in: int = N_IN
    n_out: int = N_OUT
    density: float = DENSITY
    connectivity: float = 1.0  # spiketime's model.density
    dt_ms: float = DT
    tau_mem_ms: float = TAU_MEM
    tau_out_ms: float = TAU_OUT
    theta: float = THETA
    weight_scale: float = WEIGHT_SCALE
    seed: int = 0
