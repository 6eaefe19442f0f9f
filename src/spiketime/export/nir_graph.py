r"""NIR export and import of LIF networks (:class:`~spiketime.nn.network.SpikingNetwork`).

NIR (the Neuromorphic Intermediate Representation, https://neuroir.org) describes neurons in continuous time, in
seconds::

    LIF:      tau dv/dt = (v_leak - v) + r I                       spike when v > v_threshold
    CubaLIF:  tau_syn di/dt = -i + w_in I;   tau_mem dv/dt = (v_leak - v) + r i
    LI:       tau dv/dt = (v_leak - v) + r I

Simulators that read NIR (snnTorch, Norse, Lava, chips' toolchains) discretise it with forward Euler at their
time step, ``v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t]``. Our neurons are ``v[t] = beta v[t-1] + (1 - beta)
i[t]`` with ``beta = exp(-dt/tau_mem)`` (``i[t] = alpha i[t-1] + x[t]`` with a synapse), so the export writes the
time constants for which Euler at our ``dt`` is our neuron exactly::

    tau = dt / (1 - beta)          (LIF, LI, CubaLIF tau_mem)        r = 1, v_leak = 0, v_threshold = theta
    tau_syn = dt / (1 - alpha),    w_in = tau_syn / dt               (CubaLIF: dt/tau_syn * w_in = 1)
    v_reset = 0                    (reset "zero"; "subtract" is kept in the node's metadata, see below)

(for ``dt << tau`` these are the time constants of the model, ``dt / (1 - exp(-dt/tau)) ~ tau + dt/2``).
Projections are ``Affine`` (with a bias) or ``Linear`` nodes (``effective_weight``: masked and, with
``model.weight_bits``, quantised); axonal delays are a ``Delay`` node (seconds, one per input channel) before the
projection; recurrent weights are a ``Linear`` node in a cycle from a layer's LIF node back into it.
:func:`from_nir` inverts this at the ``dt`` it is given (``beta = 1 - dt/tau``).

What NIR cannot express goes into metadata, so that a spiketime graph comes back identical: the graph's
``metadata["spiketime"]`` (``dt`` in ms, the model config as JSON) and each neuron node's ``metadata["reset"]``
(``subtract`` | ``zero``). A graph without it (from another tool) imports with ``reset: zero`` (NIR's ``v_reset`` 0; a
nonzero ``v_reset`` is refused, as spiketime has no reset to another value),
``delay_mode: interp`` and ``delay_max`` the largest delay. Synaptic (per-connection) delays have no NIR node
and raise an error.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spiketime.errors import InputError
from spiketime.files import atomic_path

DT_UNIT = 1e-3  # NIR times are in seconds, ours in ms


def _nir() -> Any:
    try:
        import nir
    except ImportError:
        raise InputError('NIR export needs the nir package: pip install "spiketime[nir]"') from None
    return nir


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _tau_nir(tau_ms: torch.Tensor, dt: float, n: int) -> np.ndarray:
    """``dt / (1 - exp(-dt/tau))`` in seconds, per neuron (float64)."""
    beta = torch.exp(-dt / tau_ms.detach().double()).expand(n)
    return _np(dt * DT_UNIT / (1.0 - beta))


def _tau_ms(tau_s: np.ndarray, dt: float) -> torch.Tensor:
    """The inverse of :func:`_tau_nir`: ``beta = 1 - dt/tau`` -> ``tau_ms = -dt / log(beta)`` (float64)."""
    beta = 1.0 - dt * DT_UNIT / torch.as_tensor(np.asarray(tau_s, dtype=np.float64))
    if bool(((beta <= 0) | (beta >= 1)).any()):
        raise InputError(f"NIR time constants must exceed dt ({dt} ms = {dt * DT_UNIT} s) to import at this dt")
    return -dt / torch.log(beta)


def to_nir(model: torch.nn.Module, dt: float | None = None, config: dict | None = None) -> Any:
    """The NIR graph of a LIF ``model`` (module docstring) at time step ``dt`` ms (default: the model's)."""
    from spiketime.nn.network import SpikingNetwork

    nir = _nir()
    if not isinstance(model, SpikingNetwork):
        raise InputError(
            f"model: NIR export supports a SpikingNetwork (LIF), got {type(model).__name__} (no NIR "
            "primitive for gamma buckets)"
        )
    dt = model.dt if dt is None else dt
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([model.projections[0].n_in])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    recs = list(model.recurrents)
    n_layers = len(model.projections)
    for idx, (proj, neuron) in enumerate(zip(model.projections, model.neurons)):
        if proj.kind == "synaptic":
            raise InputError(
                f"model: layer {idx + 1} has synaptic delays, which cannot be exported to NIR (its Delay node "
                "acts per channel); "
                "use axonal delays"
            )
        if proj.kind == "axonal":
            nodes[f"delay{idx}"] = nir.Delay(
                delay=_np(proj.delays.double()) * DT_UNIT,
                metadata={"delay_mode": proj.mode, "delay_max": proj.delay_max, "delay_sigma": proj.sigma},
            )
            edges.append((prev, f"delay{idx}"))
            prev = f"delay{idx}"
        w = _np(proj.effective_weight)
        nodes[f"fc{idx}"] = nir.Affine(weight=w, bias=_np(proj.bias)) if proj.bias is not None else nir.Linear(weight=w)
        edges.append((prev, f"fc{idx}"))
        n = proj.n_out
        name = "readout" if idx == n_layers - 1 else f"lif{idx}"
        zeros, ones = np.zeros(n), np.ones(n)
        if not hasattr(neuron, "log_tau_mem"):  # LI readout
            nodes[name] = nir.LI(tau=_tau_nir(neuron.log_tau.exp(), dt, n), r=ones, v_leak=zeros)
        else:
            meta = {"reset": neuron.reset}
            theta = np.full(n, float(neuron.theta))
            tau_m = _tau_nir(neuron.tau_mem, dt, n)
            if neuron.log_tau_syn is None:
                nodes[name] = nir.LIF(tau=tau_m, r=ones, v_leak=zeros, v_threshold=theta, v_reset=zeros, metadata=meta)
            else:
                tau_s = _tau_nir(neuron.log_tau_syn.exp(), dt, n)
                nodes[name] = nir.CubaLIF(
                    tau_syn=tau_s,
                    tau_mem=tau_m,
                    r=ones,
                    v_leak=zeros,
                    v_threshold=theta,
                    v_reset=zeros,
                    w_in=tau_s / (dt * DT_UNIT),
                    metadata=meta,
                )
        edges.append((f"fc{idx}", name))
        if idx < len(recs):
            nodes[f"rec{idx}"] = nir.Linear(weight=_np(recs[idx].effective_weight))
            edges += [(name, f"rec{idx}"), (f"rec{idx}", name)]
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([model.projections[-1].n_out])})
    edges.append((prev, "output"))
    meta = {"spiketime": {"dt": float(dt), **({"model": json.dumps(config)} if config is not None else {})}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(model: torch.nn.Module, path: str | Path, dt: float | None = None, config: dict | None = None) -> Path:
    """Write :func:`to_nir` to ``path`` (HDF5) atomically: a temporary file in the same folder, then a rename."""
    nir = _nir()
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name such as model.nir")
    graph = to_nir(model, dt, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
    return path


def _successors(edges: list[tuple[str, str]], node: str) -> list[str]:
    return [b for a, b in edges if a == node]


def from_nir(graph: Any, dt: float) -> torch.nn.Module:
    """A :class:`~spiketime.nn.network.SpikingNetwork` at time step ``dt`` ms from a NIR graph (or a .nir file
    path): a chain ``Input -> ([Delay] -> Affine|Linear -> LIF|CubaLIF (+ Linear cycle))* -> Affine|Linear ->
    LI|LIF -> Output``, read with ``beta = 1 - dt/tau`` (module docstring)."""
    from spiketime.nn.network import SpikingNetwork

    nir = _nir()
    if isinstance(graph, (str, Path)):
        if not Path(graph).is_file():
            raise InputError(f"{graph}: NIR file not found")
        graph = nir.read(str(graph))
    nodes, edges = graph.nodes, list(graph.edges)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise InputError(f"NIR graph: expected one Input node, found {len(inputs)}")
    layers: list[dict[str, Any]] = []
    cur, delay = inputs[0], None
    seen = {cur}
    while True:
        nxt = [s for s in _successors(edges, cur) if s not in seen]
        if not nxt:
            raise InputError(f"NIR graph: node {cur!r} leads nowhere (expected a chain ending in an Output node)")
        if len(nxt) > 1:
            raise InputError(f"NIR graph: node {cur!r} branches into {nxt}; only chains are supported")
        cur = nxt[0]
        seen.add(cur)
        node = nodes[cur]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Delay):
            delay = (cur, node)
        elif isinstance(node, (nir.Affine, nir.Linear)):
            layers.append({"fc": node, "delay": delay})
            delay = None
        elif isinstance(node, (nir.LIF, nir.CubaLIF, nir.LI)):
            v_reset = np.asarray(getattr(node, "v_reset", None) if getattr(node, "v_reset", None) is not None else 0.0)
            if np.any(v_reset != 0):
                raise InputError(
                    f"NIR graph: node {cur!r} resets to v_reset {np.unique(v_reset)[:3].tolist()}; "
                    "spiketime neurons reset to 0 (reset zero) or subtract the threshold, so a nonzero "
                    "v_reset cannot be imported exactly"
                )
            if not layers or "neuron" in layers[-1]:
                raise InputError(f"NIR graph: neuron node {cur!r} is not preceded by an Affine/Linear node")
            layers[-1]["neuron"] = node
            loops = [s for s in _successors(edges, cur) if (s, cur) in edges and isinstance(nodes[s], nir.Linear)]
            if loops:
                layers[-1]["rec"] = nodes[loops[0]]
                seen.add(loops[0])
        else:
            raise InputError(
                f"NIR graph: node {cur!r} of type {type(node).__name__} is not supported (expected "
                "Delay, Affine, Linear, LIF, CubaLIF, LI)"
            )
    if not layers or any("neuron" not in lay for lay in layers):
        raise InputError("NIR graph: every Affine/Linear node must feed a LIF, CubaLIF or LI node")
    hidden, readout = layers[:-1], layers[-1]
    if not hidden:
        raise InputError("NIR graph: expected at least one hidden LIF/CubaLIF layer before the readout")
    if any(isinstance(lay["neuron"], nir.LI) for lay in hidden):
        raise InputError("NIR graph: LI neurons are only supported as the last layer (the readout)")
    if readout["delay"] is not None:
        raise InputError(f"NIR graph: Delay node {readout['delay'][0]!r} before the readout is not supported")
    first = hidden[0]["neuron"]
    meta = dict(graph.metadata.get("spiketime", {})) if isinstance(graph.metadata, dict) else {}
    cfg_dict = json.loads(meta["model"]) if isinstance(meta.get("model"), (str, bytes)) else {}
    delayed = [lay for lay in hidden if lay["delay"] is not None]
    if delayed and len(delayed) != len(hidden):
        raise InputError(
            "NIR graph: Delay nodes on some hidden projections only; spiketime delays every hidden projection or none"
        )
    thetas = {
        float(np.unique(np.asarray(lay["neuron"].v_threshold))[0])
        for lay in layers
        if not isinstance(lay["neuron"], nir.LI)
    }
    for lay in layers:
        if not isinstance(lay["neuron"], nir.LI) and np.unique(np.asarray(lay["neuron"].v_threshold)).size != 1:
            raise InputError("NIR graph: spiketime needs one v_threshold for all neurons of a layer")
    if len(thetas) != 1:
        raise InputError(f"NIR graph: spiketime needs one v_threshold for all layers, found {sorted(thetas)}")
    for lay in layers:
        nd = lay["neuron"]
        if np.any(np.asarray(nd.v_leak) != 0) or np.any(np.asarray(nd.r) != 1):
            raise InputError("NIR graph: spiketime neurons have v_leak = 0 and r = 1 (see docs/deployment.md)")
    delay_meta = delayed[0]["delay"][1].metadata if delayed else {}
    max_delay = max((float(np.max(lay["delay"][1].delay)) / DT_UNIT for lay in delayed), default=0.0)
    cuba = isinstance(first, nir.CubaLIF)
    if any(isinstance(lay["neuron"], nir.CubaLIF) != cuba for lay in hidden):
        raise InputError("NIR graph: spiketime needs all hidden layers LIF or all CubaLIF")
    if isinstance(readout["neuron"], nir.CubaLIF):
        raise InputError("NIR graph: a CubaLIF readout is not supported (LI or LIF)")
    reset = (first.metadata or {}).get("reset", "zero") if hasattr(first, "metadata") else "zero"
    cfg_dict.update(
        hidden=[int(np.asarray(lay["fc"].weight).shape[0]) for lay in hidden],
        delays="axonal" if delayed else "none",
        reset=reset,
        theta=thetas.pop(),
        tau_syn=1.0 if cuba else None,
        recurrent=any("rec" in lay for lay in hidden),
        readout="li" if isinstance(readout["neuron"], nir.LI) else "lif",
        density=1.0,
        weight_bits=None,
        spike="hard",
        delay_mode=delay_meta.get("delay_mode", cfg_dict.get("delay_mode", "interp")),
        delay_max=float(delay_meta.get("delay_max", math.ceil(max_delay / dt) * dt if delayed else 0.0)),
        delay_sigma=float(delay_meta.get("delay_sigma", cfg_dict.get("delay_sigma", 1.0))),
    )
    known = set(inspect.signature(SpikingNetwork).parameters) - {"n_in", "n_out", "dt", "seed"}
    options = {k: v for k, v in cfg_dict.items() if k in known}
    n_in = int(np.asarray(layers[0]["fc"].weight).shape[1])
    n_out = int(np.asarray(readout["fc"].weight).shape[0])
    model = SpikingNetwork(n_in, n_out, dt=dt, **options)
    with torch.no_grad():
        for idx, lay in enumerate(layers):
            proj, neuron = model.projections[idx], model.neurons[idx]
            w = torch.as_tensor(np.asarray(lay["fc"].weight, dtype=np.float64))
            if tuple(w.shape) != tuple(proj.weight.shape):
                raise InputError(
                    f"NIR graph: layer {idx + 1} weight has shape {tuple(w.shape)}, expected "
                    f"{tuple(proj.weight.shape)} (layers must chain)"
                )
            proj.weight.copy_(w)
            if isinstance(lay["fc"], nir.Affine):
                proj.bias = torch.nn.Parameter(torch.as_tensor(np.asarray(lay["fc"].bias, dtype=np.float64)).float())
            if lay["delay"] is not None:
                proj.delays.copy_(torch.as_tensor(np.asarray(lay["delay"][1].delay, dtype=np.float64)) / DT_UNIT)
            nd = lay["neuron"]
            if isinstance(nd, nir.LI):
                neuron.log_tau.copy_(torch.log(_tau_ms(nd.tau, dt)))
            elif isinstance(nd, nir.CubaLIF):
                neuron.log_tau_mem.copy_(torch.log(_tau_ms(nd.tau_mem, dt)))
                neuron.log_tau_syn.copy_(torch.log(_tau_ms(nd.tau_syn, dt)))
                w_in = np.asarray(nd.w_in, dtype=np.float64) * dt * DT_UNIT / np.asarray(nd.tau_syn, dtype=np.float64)
                if not np.allclose(w_in, 1.0):
                    raise InputError(
                        "NIR graph: CubaLIF w_in must equal tau_syn / dt (spiketime's synapse adds its input unscaled)"
                    )
            else:
                neuron.log_tau_mem.copy_(torch.log(_tau_ms(nd.tau, dt)))
            if "rec" in lay:
                w_rec = torch.as_tensor(np.asarray(lay["rec"].weight, dtype=np.float64))
                if bool((w_rec.diagonal() != 0).any()):
                    raise InputError(
                        f"NIR graph: layer {idx + 1}'s recurrent weights have self-connections, "
                        "which spiketime's recurrent layers exclude"
                    )
                model.recurrents[idx].weight.copy_(w_rec)
                model.recurrents[idx].mask.fill_(1.0).fill_diagonal_(0.0)
    return model
