"""SpikingGamma modules: gamma buckets, dense and convolutional gamma layers, and the feed-forward network.

Equations in :mod:`spiketime.functional.gamma` (buckets) and :mod:`spiketime.functional.sigma_delta` (neuron).
Every time constant is in ms and every decay is recomputed from it and the module's ``dt`` on each call, so
setting ``dt`` (:meth:`GammaNetwork.set_dt`) changes the time resolution and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spiketime.functional.gamma import BucketState, bucket_decays, bucket_sequence, bucket_step, power_law_taus
from spiketime.functional.sigma_delta import (
    SigmaDeltaParams,
    SigmaDeltaState,
    sigma_delta_init,
    sigma_delta_step,
)
from spiketime.functional.sigma_delta import detach_state as detach_neuron_state

BUCKET_WEIGHTS = ("neuron", "synapse")
MIN_LOG_RATIO = 1e-3  # log(tau_{k+1} / tau_k) >= 1e-3: taus stay >= 0.1 % apart, even in float32
DEFAULT_NEURON = SigmaDeltaParams()  # the default neuron of GammaDense / GammaConv2d (None: a linear readout)


def _inv_softplus(z: float) -> float:
    """``softplus^-1(z) = log(exp(z) - 1)`` for ``z > 0``."""
    return z + math.log(-math.expm1(-z))


class GammaLayerState(NamedTuple):
    buckets: BucketState  # b [B, N, K] (dense) or [B, C, H, W, K] (conv)
    neuron: SigmaDeltaState | None  # [B, M] / [B, O, H', W']; None for a linear readout


def detach_layer_state(state: GammaLayerState | None) -> GammaLayerState | None:
    """A layer state cut from the graph (online learning)."""
    if state is None:
        return None
    neuron = None if state.neuron is None else detach_neuron_state(state.neuron)
    return GammaLayerState(BucketState(state.buckets.b.detach()), neuron)


class GammaBuckets(nn.Module):
    """``K`` gamma buckets on each of ``n`` inputs with learnable, ordered time constants ``taus`` [n, K] (ms).

    Parameterisation (positive and strictly increasing for any parameter values)::

        log tau_1 = log_tau1                                           [n]
        log tau_k = log tau_{k-1} + softplus(raw_log_ratio_{k-1}) + MIN_LOG_RATIO    k = 2..K, raw [n, K-1]

    i.e. ``tau_k = tau_1 * prod_{m<k} exp(softplus(raw_m) + 1e-3)``. At init ``softplus(raw) + 1e-3 = log(factor)``,
    which reproduces :func:`power_law_taus` ``(K, tau_1, factor)`` (needs ``factor > exp(1e-3)`` when ``K > 1``).
    Inputs are ``[B, n, *spatial]``; the buckets ``[B, n, *spatial, K]`` share their taus over ``spatial``.
    """

    def __init__(
        self, n: int, dt: float, K: int = 5, tau_1: float = 5.0, factor: float = 1.5, learn_taus: bool = True
    ) -> None:
        super().__init__()
        power_law_taus(K, tau_1, factor)  # validates K, tau_1, factor
        if K > 1 and not math.log(factor) > MIN_LOG_RATIO:
            raise ValueError(f"factor must be > exp({MIN_LOG_RATIO}) for ordered learnable taus, got {factor!r}")
        self.n, self.K, self.dt = n, K, dt
        self.log_tau1 = nn.Parameter(torch.full((n,), math.log(tau_1)), requires_grad=learn_taus)
        raw = _inv_softplus(math.log(factor) - MIN_LOG_RATIO) if K > 1 else 0.0
        self.raw_log_ratio = nn.Parameter(torch.full((n, K - 1), raw), requires_grad=learn_taus)

    @property
    def taus(self) -> Tensor:
        """Time constants [n, K] in ms, ``tau_1 < tau_2 < ... < tau_K``."""
        steps = F.softplus(self.raw_log_ratio) + MIN_LOG_RATIO
        log_tau = torch.cat([self.log_tau1.unsqueeze(-1), self.log_tau1.unsqueeze(-1) + steps.cumsum(-1)], dim=-1)
        return log_tau.exp()

    @property
    def decays(self) -> Tensor:
        """``a_k = exp(-dt / tau_k)`` [n, K] at the current ``dt``."""
        return bucket_decays(self.taus, self.dt)

    def _decays_for(self, spatial: int) -> Tensor:
        a = self.decays
        return a.view(self.n, *([1] * spatial), self.K)

    def init_state(self, u: Tensor) -> BucketState:
        """Empty buckets for one step's input ``u`` [B, n, *spatial]."""
        return BucketState(u.new_zeros(*u.shape, self.K))

    def step(self, u: Tensor, state: BucketState | None = None) -> tuple[Tensor, BucketState]:
        """One step: ``u`` [B, n, *spatial] -> buckets [B, n, *spatial, K] (also the new state)."""
        state = self.init_state(u) if state is None else state
        state = bucket_step(u, state, self._decays_for(u.dim() - 2))
        return state.b, state

    def forward(self, u_seq: Tensor, state: BucketState | None = None) -> tuple[Tensor, BucketState]:
        """``u_seq`` [T, B, n, *spatial] -> buckets [T, B, n, *spatial, K] and the final state."""
        return bucket_sequence(u_seq, self._decays_for(u_seq.dim() - 3), state)


def _unit_mass_bucket_weights(K: int, factor: float) -> Tensor:
    """``v_k = (tau_1 / tau_k) / K = factor^-(k-1) / K`` [K]: bucket ``k``'s impulse response has mass
    ``~tau_k / tau_1``, so each bucket adds a unit-mass kernel / K and the summed kernel is a unit-mass smoothed
    delay spread over the buckets' delays."""
    return 1.0 / (power_law_taus(K, 1.0, factor) * K)


def _neuron_step(
    neuron: SigmaDeltaParams | None, x: Tensor, state: SigmaDeltaState | None, dt: float
) -> tuple[Tensor, Tensor | None, SigmaDeltaState | None]:
    if neuron is None:
        return x, None, None
    if state is None:
        state = sigma_delta_init(x.shape[0], tuple(x.shape[1:]), x, neuron.theta0)
    u, s, new = sigma_delta_step(x, state, neuron, dt)
    # straight-through spikes: value s (u = s theta exactly), gradient du / theta[t-1] (the rate estimate's)
    return u, s + (u - u.detach()) / state.theta.detach(), new


def _neuron_sequence(
    neuron: SigmaDeltaParams | None, x_seq: Tensor, state: SigmaDeltaState | None, dt: float
) -> tuple[Tensor, Tensor | None, SigmaDeltaState | None]:
    if neuron is None:
        return x_seq, None, None
    us, ss = [], []
    for x in x_seq:
        u, s, state = _neuron_step(neuron, x, state, dt)
        us.append(u)
        ss.append(s)
    if not us:
        return x_seq, torch.zeros_like(x_seq), state
    return torch.stack(us), torch.stack(ss), state


class _GammaLayer(nn.Module):
    """What :class:`GammaDense` and :class:`GammaConv2d` share: ``dt`` (the buckets'), and one step
    ``u -> buckets -> current -> sigma-delta neuron`` (subclasses define ``current`` and set ``buckets``,
    ``neuron``)."""

    buckets: GammaBuckets
    neuron: SigmaDeltaParams | None

    @property
    def dt(self) -> float:
        return self.buckets.dt

    @dt.setter
    def dt(self, value: float) -> None:
        self.buckets.dt = value

    def current(self, b: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, u: Tensor, state: GammaLayerState | None = None) -> tuple[Tensor, Tensor | None, GammaLayerState]:
        """One step: ``u`` [B, n_in] (or [B, C, H, W]) -> (output, spikes or None, state)."""
        b_state, n_state = (None, None) if state is None else state
        b, b_state = self.buckets.step(u, b_state)
        out, s, n_state = _neuron_step(self.neuron, self.current(b), n_state, self.dt)
        return out, s, GammaLayerState(b_state, n_state)


class GammaDense(_GammaLayer):
    """Gamma buckets on ``n_in`` inputs, a dense weighted sum, then sigma-delta neurons (or none).

    ``x_j = sum_i sum_k w_ji v_jk b_ik + bias_j`` (``bucket_weights="neuron"``, ``v`` [n_out, K]) or
    ``x_j = sum_i sum_k w_ji v_jik b_ik + bias_j`` (``"synapse"``, ``v`` [n_out, n_in, K]); the layer outputs
    ``u = s theta`` of :func:`~spiketime.functional.sigma_delta.sigma_delta_step` on ``x`` (``neuron`` params), or
    ``x`` itself when ``neuron=None`` (linear readout). Init: ``w ~ N(0, (weight_scale / sqrt(n_in))^2)`` from
    ``generator``, ``v_k = factor^-(k-1) / K`` (unit-mass summed kernel, see :func:`_unit_mass_bucket_weights`),
    bias 0.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        dt: float,
        K: int = 5,
        tau_1: float = 5.0,
        factor: float = 1.5,
        learn_taus: bool = True,
        bucket_weights: str = "neuron",
        neuron: SigmaDeltaParams | None = DEFAULT_NEURON,
        bias: bool = True,
        weight_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if bucket_weights not in BUCKET_WEIGHTS:
            raise ValueError(f"bucket_weights must be one of {BUCKET_WEIGHTS}, got {bucket_weights!r}")
        self.n_in, self.n_out, self.K, self.mode, self.neuron = n_in, n_out, K, bucket_weights, neuron
        self.buckets = GammaBuckets(n_in, dt, K, tau_1, factor, learn_taus)
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=generator) * (weight_scale / math.sqrt(n_in)))
        v = _unit_mass_bucket_weights(K, factor)
        shape = (n_out, K) if bucket_weights == "neuron" else (n_out, n_in, K)
        self.bucket_weight = nn.Parameter(v.expand(shape).clone())
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    @property
    def effective_weight(self) -> Tensor:
        """``W[j, i, k] = w_ji v_jk`` (or ``w_ji v_jik``): [n_out, n_in, K]."""
        v = self.bucket_weight.unsqueeze(1) if self.mode == "neuron" else self.bucket_weight
        return self.weight.unsqueeze(-1) * v

    def current(self, b: Tensor) -> Tensor:
        """Input current ``x`` [..., n_out] from buckets ``b`` [..., n_in, K]."""
        w = self.effective_weight.flatten(1)
        x = b.flatten(-2) @ w.t()
        return x if self.bias is None else x + self.bias

    def forward(
        self, u_seq: Tensor, state: GammaLayerState | None = None
    ) -> tuple[Tensor, Tensor | None, GammaLayerState]:
        """``u_seq`` [T, B, n_in] -> (output [T, B, n_out], spikes [T, B, n_out] or None, final state)."""
        if u_seq.dim() != 3 or u_seq.shape[-1] != self.n_in:
            raise ValueError(f"u_seq must be [T, B, {self.n_in}], got shape {tuple(u_seq.shape)}")
        b_state, n_state = (None, None) if state is None else state
        b_seq, b_state = self.buckets(u_seq, b_state)
        out, s, n_state = _neuron_sequence(self.neuron, self.current(b_seq), n_state, self.dt)
        return out, s, GammaLayerState(b_state, n_state)


class GammaConv2d(_GammaLayer):
    """Gamma buckets on every input channel-pixel (taus per channel, [C, K]), a 2-D convolution over the
    ``C * K`` bucket planes, then sigma-delta neurons per output pixel (or none).

    ``x = conv2d(b, W) + bias`` with ``b`` [B, C, H, W, K] viewed as ``[B, C*K, H, W]`` (plane ``c*K + k`` is
    bucket ``k`` of channel ``c``). The bucket weights are folded into the conv weight ``W`` [O, C*K, kh, kw]
    (``W[o, c*K + k] = w_oc v_ock``, one free weight per tap and bucket: the ``"synapse"`` form). Init
    ``W[o, c*K + k] = N(0, (weight_scale / sqrt(C kh kw))^2) * factor^-(k-1) / K`` (see :class:`GammaDense`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        dt: float,
        K: int = 5,
        tau_1: float = 5.0,
        factor: float = 1.5,
        learn_taus: bool = True,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        neuron: SigmaDeltaParams | None = DEFAULT_NEURON,
        bias: bool = True,
        weight_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.in_channels, self.out_channels, self.K, self.neuron = in_channels, out_channels, K, neuron
        self.stride, self.padding = stride, padding
        self.buckets = GammaBuckets(in_channels, dt, K, tau_1, factor, learn_taus)
        w = torch.randn(out_channels, in_channels, 1, kh, kw, generator=generator)
        w = w * (weight_scale / math.sqrt(in_channels * kh * kw))
        v = _unit_mass_bucket_weights(K, factor).view(1, 1, K, 1, 1)
        self.weight = nn.Parameter((w * v).reshape(out_channels, in_channels * K, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def current(self, b: Tensor) -> Tensor:
        """Input current [N, O, H', W'] from buckets ``b`` [N, C, H, W, K]."""
        planes = b.permute(0, 1, 4, 2, 3).flatten(1, 2)
        return F.conv2d(planes, self.weight, self.bias, self.stride, self.padding)

    def forward(
        self, u_seq: Tensor, state: GammaLayerState | None = None
    ) -> tuple[Tensor, Tensor | None, GammaLayerState]:
        """``u_seq`` [T, B, C, H, W] -> (output [T, B, O, H', W'], spikes or None, final state)."""
        if u_seq.dim() != 5 or u_seq.shape[2] != self.in_channels:
            raise ValueError(f"u_seq must be [T, B, {self.in_channels}, H, W], got shape {tuple(u_seq.shape)}")
        b_state, n_state = (None, None) if state is None else state
        b_seq, b_state = self.buckets(u_seq, b_state)
        T, B = u_seq.shape[:2]
        x = self.current(b_seq.flatten(0, 1))
        out, s, n_state = _neuron_sequence(self.neuron, x.unflatten(0, (T, B)), n_state, self.dt)
        return out, s, GammaLayerState(b_state, n_state)


class GammaNetwork(nn.Module):
    """``input -> [GammaConv2d + sigma-delta] x len(conv) -> [GammaDense + sigma-delta] x len(hidden) ->
    GammaDense readout (no neuron)``.

    ``forward(x_seq [T, B, n_in], state=None) -> (logits [T, B, n_out], state)``; ``return_spikes=True`` adds the
    hidden spikes ``[T, B, n]`` per layer. The readout's
    logits are its current ``x`` at every step. With ``conv`` (output channels per convolutional layer) the input
    is an image flattened from ``input_shape = (C, H, W)`` (``n_in = C H W``); each convolution has a
    ``conv_kernel`` square kernel, stride ``conv_stride`` and padding ``conv_kernel // 2``, and its output is
    flattened for the first dense layer. Spikes of a convolutional layer are returned flattened, ``[T, B, O H' W']``.

    Between layers the transmitted ``u = s theta`` is divided by ``1 - a_r`` (``a_r = exp(-dt/tau_ref)``) when
    ``normalize_spikes`` (default): a sustained activation ``y`` then reaches the next layer's first bucket as
    ``~y`` at every ``dt`` (each spike of height ``theta`` moves it by ``~theta tau_ref / tau_1``), where the raw
    ``u`` would give ``(1 - a_r) y ~ y dt / tau_ref``, so that changing ``dt`` would rescale every hidden input.
    The network input (event counts per bin) is scaled the same way: an input event is a spike of height 1, so
    the first buckets see the same input at every ``dt`` (``normalize_spikes=False``: the input and hidden
    outputs are used as given, e.g. for an analog input sampled at ``dt``).

    Defaults: ``K = 5`` buckets with ``tau_k = 5 * 1.5^(k-1)`` = 5, 7.5, 11.3, 16.9, 25.3 ms, i.e. smoothed
    delays with means from ~5 ms to ~66 ms (``sum_{m<=k} tau_m``) on ms-resolution inputs; sigma-delta neurons
    with ``theta0 = 0.1``, ``tau_ref = tau_th = 20`` ms, ``m_f = 0.5`` (steady threshold ``0.1 + 0.5 y``).
    Weights from ``torch.Generator().manual_seed(seed)``, layer by layer.

    The returned hidden spikes are straight-through: value ``s`` (0/1), gradient ``du[t] / theta[t-1]``, so a
    loss on the spike count (``train.gain_weight``) gets the gradient of the rate estimate
    ``sum_t u[t] / theta[t-1]`` (``~ (1 - a_r) y / theta`` per step for a sustained ``y``).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: list[int],
        dt: float,
        K: int = 5,
        tau_1: float = 5.0,
        factor: float = 1.5,
        bucket_weights: str = "neuron",
        learn_taus: bool = True,
        theta0: float = 0.1,
        tau_ref: float = 20.0,
        tau_th: float = 20.0,
        m_f: float = 0.5,
        seed: int = 0,
        weight_scale: float = 1.0,
        normalize_spikes: bool = True,
        conv: Sequence[int] = (),
        input_shape: tuple[int, int, int] | None = None,
        conv_kernel: int = 3,
        conv_stride: int = 2,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dt, self.normalize_spikes, self.n_in = dt, normalize_spikes, n_in
        self.neuron_params = SigmaDeltaParams(theta0, tau_ref, tau_th, m_f)
        self.layers = nn.ModuleList()
        self.input_shape = None
        if conv:
            if input_shape is None or math.prod(input_shape) != n_in:
                raise ValueError(
                    f"input_shape must be (C, H, W) with C*H*W = n_in = {n_in} for conv layers, got {input_shape!r}"
                )
            self.input_shape = tuple(input_shape)
            c, h, w = input_shape
            for out_c in conv:
                self.layers.append(
                    GammaConv2d(
                        c,
                        out_c,
                        conv_kernel,
                        dt,
                        K,
                        tau_1,
                        factor,
                        learn_taus,
                        conv_stride,
                        conv_kernel // 2,
                        self.neuron_params,
                        weight_scale=weight_scale,
                        generator=g,
                    )
                )
                h, w = ((n + 2 * (conv_kernel // 2) - conv_kernel) // conv_stride + 1 for n in (h, w))
                c = out_c
            n_in = c * h * w
        sizes = [n_in, *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.layers.append(
                GammaDense(
                    a,
                    b,
                    dt,
                    K,
                    tau_1,
                    factor,
                    learn_taus,
                    bucket_weights,
                    self.neuron_params,
                    weight_scale=weight_scale,
                    generator=g,
                )
            )
        self.layers.append(
            GammaDense(
                sizes[-1],
                n_out,
                dt,
                K,
                tau_1,
                factor,
                learn_taus,
                bucket_weights,
                None,
                weight_scale=weight_scale,
                generator=g,
            )
        )

    NO_GRAD_CHUNK = 250  # time steps per chunk of a forward pass without autograd

    def set_dt(self, dt: float) -> None:
        """Change the time step (ms) of every layer; all decays follow from the time constants."""
        self.dt = dt
        for layer in self.layers:
            layer.dt = dt

    def spike_gain(self) -> float:
        """Factor applied to the input and to ``u`` between layers: ``1 / (1 - exp(-dt/tau_ref))``, or 1."""
        if not self.normalize_spikes:
            return 1.0
        return 1.0 / -math.expm1(-self.dt / float(self.neuron_params.tau_ref))

    def _check(self, state: tuple | None) -> tuple:
        state = (None,) * len(self.layers) if state is None else tuple(state)
        if len(state) != len(self.layers):
            raise ValueError(f"state must hold {len(self.layers)} layer states, got {len(state)}")
        return state

    def run(self, x_seq: Tensor, state: tuple | None = None) -> tuple[Tensor, tuple, list[Tensor]]:
        """``x_seq`` [T, B, n_in] -> (logits [T, B, n_out], final state, every layer's output sequence: the hidden
        spikes, then the logits), as :meth:`spiketime.nn.network.SpikingNetwork.run`.

        Without autograd (evaluation) the sequence runs in chunks of :attr:`NO_GRAD_CHUNK` steps, the state carried
        over (same result): the buckets of one chunk, not of all ``T`` steps, are held at once."""
        if x_seq.dim() != 3 or x_seq.shape[-1] != self.n_in:
            raise ValueError(f"x_seq must be [T, B, {self.n_in}], got shape {tuple(x_seq.shape)}")
        if torch.is_grad_enabled() or len(x_seq) <= self.NO_GRAD_CHUNK:
            return self._through_layers(x_seq, state, one_step=False)
        chunks = []
        for chunk in x_seq.split(self.NO_GRAD_CHUNK):
            _, state, outputs = self._through_layers(chunk, state, one_step=False)
            chunks.append(outputs)
        outputs = [torch.cat(layer) for layer in zip(*chunks)]
        return outputs[-1], state, outputs

    def forward(
        self, x_seq: Tensor, state: tuple | None = None, return_spikes: bool = False
    ) -> tuple[Tensor, tuple] | tuple[Tensor, tuple, list[Tensor]]:
        """``x_seq`` [T, B, n_in] -> (logits [T, B, n_out], final state), the network contract; with
        ``return_spikes`` also the hidden spike trains (a list, one ``[T, B, n]`` per hidden layer)."""
        logits, state, outputs = self.run(x_seq, state)
        return (logits, state, outputs[:-1]) if return_spikes else (logits, state)

    def step(self, x: Tensor, state: tuple | None = None) -> tuple[Tensor, tuple, list[Tensor]]:
        """One step: ``x`` [B, n_in] -> (logits [B, n_out], state, [hidden spikes [B, n] per layer, logits])."""
        return self._through_layers(x, state, one_step=True)

    def _through_layers(self, x: Tensor, state: tuple | None, one_step: bool) -> tuple[Tensor, tuple, list[Tensor]]:
        """``x`` through every layer (a sequence, or ``one_step``), the input and every hidden output scaled by
        :meth:`spike_gain`: (logits, state, [hidden spikes per layer, logits])."""
        state, gain, outputs, new = self._check(state), self.spike_gain(), [], []
        lead = 1 if one_step else 2  # [B] or [T, B] leading dims
        h = x if self.input_shape is None else x.unflatten(lead, self.input_shape)
        for layer, st in zip(self.layers, state):
            if isinstance(layer, GammaDense):
                h = h.flatten(lead)
            h, s, st = (layer.step if one_step else layer)(h * gain, st)
            new.append(st)
            if s is not None:
                outputs.append(s.flatten(lead))
        return h, tuple(new), [*outputs, h]

    @torch.no_grad()
    def project_(self) -> None:
        """Nothing to keep feasible (taus are positive and ordered by construction); the trainer's common hook."""

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Learned parameters split into ``weights`` (weights, bucket weights, biases) and ``time_constants``
        (bucket taus); ``delays`` is empty (the buckets are the delays)."""
        groups: dict[str, list[nn.Parameter]] = {"weights": [], "time_constants": [], "delays": []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                leaf = name.rsplit(".", 1)[-1]
                groups["time_constants" if leaf in ("log_tau1", "raw_log_ratio") else "weights"].append(p)
        return groups

    def learned_delays(self) -> dict[str, Tensor]:
        """No learned delays (the trainer's plots ask every model)."""
        return {}

    @staticmethod
    def detach_state(state: tuple | None) -> tuple | None:
        """The network state cut from the graph (online learning)."""
        return None if state is None else tuple(detach_layer_state(s) for s in state)
