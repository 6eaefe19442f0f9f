"""Typed run configuration: dataclasses loaded from YAML, ``--set section.key=value`` overrides.

Every error is a :class:`ConfigError` whose message is one line naming the file or key and what
was expected; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spiketime.errors import InputError, first_line  # noqa: E402  (torch-free)

# A bad configuration value, file or key (message: one line). The same class as the library's InputError, so
# that the CLI reports a bad key and a bad argument of a library call alike (one line, exit 2).
ConfigError = InputError
__all__ = [
    "ConfigError",
    "first_line",
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "load",
    "validate",
    "from_dict",
    "apply",
    "parse_set",
]


class _NotFinite(ConfigError):
    """A float key given inf or nan (reported as such, also inside ``float | None``)."""


TIMING_TASKS = ("isi", "ccisi", "coincidence")
BUILTIN_EVENT_TASKS = ("speech_digits", "event_digits")
REAL_EVENT_TASKS = ("shd", "ssc", "nmnist", "dvs_gesture")
CAMERA_TASKS = ("event_digits", "nmnist", "dvs_gesture")  # 2-D sensors: inputs are flattened (polarity, y, x) frames
# a run name becomes one path component (runs/<timestamp>-<name>): no separators, no leading dot
RUN_NAME = re.compile(r"[A-Za-z0-9_+=,@-][A-Za-z0-9._+=,@-]*")


@dataclass
class DataConfig:
    """What the network sees: a synthetic timing task (:mod:`spiketime.data.timing`), a built-in event set
    (spoken digits, event digits) or a real one read from disk; times in ms."""

    task: Literal[
        "isi", "ccisi", "coincidence", "speech_digits", "event_digits", "shd", "ssc", "nmnist", "dvs_gesture"
    ] = "ccisi"
    variant: Literal["rate", "timing"] = "timing"
    dt: float = 1.0
    duration: float = 100.0
    channels: int = 16
    path: str | None = None
    pool: int = 1
    rate_norm: Literal["whole", "part", "norm"] = "whole"
    val_fraction: float = 0.1
    num_classes: int = 5
    noise: float = 2.0
    jitter: float = 1.0
    n_train: int = 6000
    n_val: int = 500
    n_test: int = 1000
    seed: int = 0


@dataclass
class ModelConfig:
    """``type: lif``: input -> hidden LIF layers (feedforward, or recurrent) -> LI (or LIF) readout.
    ``type: gamma``: SpikingGamma (:class:`~spiketime.nn.gamma.GammaNetwork`): gamma buckets -> sigma-delta
    neurons per hidden layer -> linear readout of buckets; uses ``hidden``, ``weight_scale`` and the gamma keys."""

    type: Literal["lif", "gamma"] = "lif"
    hidden: list[int] = field(default_factory=lambda: [128])
    delays: Literal["none", "axonal", "synaptic"] = "axonal"
    delay_mode: Literal["interp", "gaussian"] = "interp"
    delay_max: float = 30.0
    delay_sigma: float = 1.0
    delay_init: list[float] = field(default_factory=lambda: [0.0, 1.0])
    tau_mem: float = 10.0
    learn_tau: bool = True
    tau_syn: float | None = 5.0
    tau_out: float = 10.0
    reset: Literal["subtract", "zero"] = "subtract"
    theta: float = 1.0
    surrogate: Literal["fast_sigmoid", "gaussian", "arctan", "triangle", "sigmoid"] = "fast_sigmoid"
    surrogate_scale: float | None = None
    # hard: H(v - theta) forward, surrogate gradient backward; surrogate_forward: the smooth spike
    # sigmoid(spike_steepness * (v - theta)) forward (exact gradient), swapped for H at deployment (eval --hard)
    spike: Literal["hard", "surrogate_forward"] = "hard"
    spike_steepness: float = 5.0  # steepness of the surrogate-forward sigmoid, per unit of the membrane
    weight_bits: int | None = (
        None  # quantisation-aware training: every weight matrix used as its symmetric b-bit version
    )
    weight_quant: Literal["per_tensor", "per_channel"] = "per_channel"  # one weight scale per matrix or output channel
    weight_scale: float = 1.0  # init std of W * (1 - beta) * sqrt(fan_in), in units of theta
    readout: Literal["li", "lif"] = "li"
    backend: Literal["auto", "fused", "reference"] = "auto"  # LIF/LI scan: fused kernels or the step-by-step reference
    recurrent: bool = False  # hidden layers also get W_rec s[t-1] (own previous spikes, no self-connections)
    density: float = 1.0  # fraction of nonzero connections of every hidden projection (fixed mask; readout dense)
    # type: gamma only
    buckets: int = 5  # K gamma buckets per input
    bucket_tau: float = 5.0  # tau_1 (ms); tau_k = tau_1 * bucket_factor^(k-1) at init
    bucket_factor: float = 1.5
    bucket_weights: Literal["neuron", "synapse"] = "neuron"  # bucket weights v_jk per neuron or v_jik per synapse
    learn_bucket_tau: bool = True
    sd_theta: float = 0.1  # sigma-delta resting threshold theta0
    tau_ref: float = 20.0  # ms, decay of the sigma-delta estimate
    tau_th: float = 20.0  # ms, relaxation of the adaptive threshold
    threshold_gain: float = 0.5  # m_f: threshold increase per spike, in units of the threshold
    conv: list[int] = field(default_factory=list)  # output channels of gamma conv layers before `hidden` (cameras)
    conv_kernel: int = 3  # square kernel of every conv layer (padding conv_kernel // 2)
    conv_stride: int = 2


@dataclass
class TrainConfig:
    """Optimisation; ``learner`` picks the learning rule."""

    learner: Literal["bptt", "online", "gamma_online"] = "bptt"
    feedback: Literal["symmetric", "random"] = "symmetric"  # online: learning signal of the hidden layers
    update_every: int | None = None  # online: optimiser step every K time steps; null: once per sequence
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-2
    lr_tau: float = 1e-2
    lr_delay: float = 0.5
    loss: Literal["max", "mean", "last", "per_step", "spike_count"] = "max"
    schedule: Literal["none", "cosine", "step"] = "cosine"
    step_size: int = 10
    gamma: float = 0.5
    grad_clip: float | None = 1.0
    early_stop: bool = True
    patience: int = 10
    seed: int = 0
    device: str = "cpu"
    threads: int | None = (
        None  # torch CPU threads (None: torch's choice); results are bit-identical only at equal counts
    )
    progress: bool = True
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gain_weight: float = 0.0  # model.type gamma: weight of the spike-rate (gain) loss
    sam_rho: float = 0.0  # sharpness-aware minimisation: radius of the weight perturbation (0: plain optimiser)
    sam_adaptive: bool = False  # ASAM: perturbation scaled elementwise by |w| (scale-invariant sharpness)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "run"

    def __post_init__(self) -> None:
        # keys given by a file or --set, in the order last given (not a field: to_dict leaves it out)
        self.explicit_keys: dict[str, None] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(key, value, arg)
            except _NotFinite:
                raise
            except ConfigError:
                continue
        raise bad
    if origin is list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner,) = typing.get_args(tp)
        return [_coerce(key, v, inner) for v in value]
    if tp is type(None):
        if value is not None:
            raise bad
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise _NotFinite(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply(cfg: Config, key: str, value: Any) -> None:
    """Set ``section.key`` (or ``name``) to ``value``, type-checked."""
    if key == "name":
        name = _coerce(key, value, str)
        if not RUN_NAME.fullmatch(name):
            raise ConfigError(
                f"name: expected letters, digits and . _ - + = , @ (not starting with a dot; it names "
                f"the run directory runs/<timestamp>-<name>), got {name!r}"
            )
        cfg.name = name
        return
    cfg.explicit_keys.pop(key, None)
    cfg.explicit_keys[key] = None
    section, _, sub = key.partition(".")
    if section not in SECTIONS or not sub:
        raise ConfigError(f"unknown config key {key!r}: expected name or one of data.*, model.*, train.*")
    obj = getattr(cfg, section)
    hints = _hints(SECTIONS[section])
    if sub not in hints:
        raise ConfigError(f"unknown config key {key!r}: {section} has {', '.join(sorted(hints))}")
    setattr(obj, sub, _coerce(key, value, hints[sub]))


def parse_set(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` from ``--set``; the value is read as YAML (``64``, ``true``, ``[64, 64]``)."""
    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and "," in value:  # "64,64" -> [64, 64]
        try:
            value = [yaml.safe_load(v) for v in value.split(",")]
        except yaml.YAMLError:
            pass
    return key.strip(), value


def validate(cfg: Config) -> Config:
    """Fill the defaults that depend on ``model.type``, then reject impossible values with a one-line error naming
    the key. With ``model.type: gamma`` (whose buckets are the delays) ``model.delays`` becomes ``none`` unless it
    was given after ``model.type`` (so ``--config lif.yaml --set model.type=gamma`` drops the file's delays)."""
    from spiketime.nn.gamma import MIN_LOG_RATIO  # the library's bound (imports torch: only when validating)

    min_factor = math.exp(MIN_LOG_RATIO)  # model.bucket_factor must exceed it when buckets > 1
    d, m, t = cfg.data, cfg.model, cfg.train
    given = list(cfg.explicit_keys)
    if m.type == "gamma" and not (
        "model.delays" in given
        and ("model.type" not in given or given.index("model.delays") > given.index("model.type"))
    ):
        m.delays = "none"
    checks = [
        (d.dt > 0, "data.dt", "a positive time step in ms"),
        (d.duration >= d.dt, "data.duration", f"at least data.dt ({d.dt} ms)"),
        (d.channels >= 1, "data.channels", "at least 1"),
        (d.pool >= 1, "data.pool", "an integer >= 1 (spatial sum-pooling of camera events)"),
        (0 < d.val_fraction < 1, "data.val_fraction", "a fraction in (0, 1)"),
        (d.num_classes >= 2, "data.num_classes", "at least 2"),
        (d.noise >= 0, "data.noise", "a rate >= 0 Hz"),
        (d.jitter >= 0, "data.jitter", "a standard deviation >= 0 ms"),
        (min(d.n_train, d.n_val, d.n_test) >= 1, "data.n_train/n_val/n_test", "at least 1 sample each"),
        (
            len(m.hidden) >= 1 and all(h >= 1 for h in m.hidden),
            "model.hidden",
            "a non-empty list of positive layer sizes",
        ),
        (
            m.delays == "none" or m.delay_max >= d.dt,
            "model.delay_max",
            f"at least data.dt ({d.dt} ms) when model.delays is {m.delays}",
        ),
        (m.delay_sigma > 0, "model.delay_sigma", "a positive width in ms"),
        (
            len(m.delay_init) == 2 and 0 <= m.delay_init[0] <= m.delay_init[1] <= 1,
            "model.delay_init",
            "[lo, hi] with 0 <= lo <= hi <= 1",
        ),
        (m.tau_mem > 0, "model.tau_mem", "a positive time constant in ms"),
        (m.tau_syn is None or m.tau_syn > 0, "model.tau_syn", "null or a positive time constant in ms"),
        (m.tau_out > 0, "model.tau_out", "a positive time constant in ms"),
        (m.theta > 0, "model.theta", "a positive threshold"),
        (m.surrogate_scale is None or m.surrogate_scale > 0, "model.surrogate_scale", "null or > 0"),
        (m.spike_steepness > 0, "model.spike_steepness", "a positive sigmoid steepness"),
        (
            m.spike == "hard" or m.type == "lif",
            "model.spike",
            "hard with model.type gamma (surrogate-forward spikes are for LIF networks)",
        ),
        (m.weight_bits is None or 2 <= m.weight_bits <= 16, "model.weight_bits", "null or an integer in 2..16"),
        (m.weight_bits is None or m.type == "lif", "model.weight_bits", "null with model.type gamma"),
        (t.sam_rho >= 0, "train.sam_rho", "a perturbation radius >= 0 (0: no SAM)"),
        (t.sam_rho > 0 or not t.sam_adaptive, "train.sam_adaptive", "false unless train.sam_rho > 0"),
        (
            t.sam_rho == 0 or t.precision != "fp16",
            "train.precision",
            "fp32 or bf16 with train.sam_rho > 0 (SAM's two gradients do not share fp16's dynamic loss scale)",
        ),
        (0 < m.density <= 1, "model.density", "a fraction in (0, 1] of nonzero hidden connections"),
        (t.epochs >= 0, "train.epochs", "an integer >= 0"),
        (t.batch_size >= 1, "train.batch_size", "an integer >= 1"),
        (min(t.lr, t.lr_tau, t.lr_delay) >= 0, "train.lr/lr_tau/lr_delay", "learning rates >= 0"),
        (t.grad_clip is None or t.grad_clip > 0, "train.grad_clip", "null or > 0"),
        (t.patience >= 1, "train.patience", "an integer >= 1"),
        (t.step_size >= 1, "train.step_size", "an integer >= 1"),
        (t.threads is None or t.threads >= 1, "train.threads", "null or an integer >= 1 (torch CPU threads)"),
        (t.precision in ("fp32", "bf16", "fp16"), "train.precision", "one of fp32, bf16, fp16"),
        (t.update_every is None or t.update_every >= 1, "train.update_every", "null or an integer >= 1"),
        (t.gain_weight >= 0, "train.gain_weight", "a weight >= 0 of the spike-rate loss"),
        (t.gain_weight == 0 or m.type == "gamma", "train.gain_weight", "0 unless model.type is gamma"),
        (m.buckets >= 1, "model.buckets", "an integer >= 1"),
        (m.bucket_tau > 0, "model.bucket_tau", "a positive time constant in ms"),
        (
            m.bucket_factor >= 1 and (m.buckets == 1 or m.bucket_factor > min_factor),
            "model.bucket_factor",
            f"a factor > {min_factor:.4f} when model.buckets > 1 (>= 1 otherwise)",
        ),
        (m.sd_theta > 0, "model.sd_theta", "a positive resting threshold"),
        (m.tau_ref > 0, "model.tau_ref", "a positive time constant in ms"),
        (m.tau_th > 0, "model.tau_th", "a positive time constant in ms"),
        (m.threshold_gain >= 0, "model.threshold_gain", "a threshold multiplier >= 0"),
        (
            t.learner != "gamma_online" or m.type == "gamma",
            "model.type",
            "gamma with train.learner gamma_online (use train.learner online for LIF networks)",
        ),
        (
            m.type != "gamma" or t.learner != "online",
            "train.learner",
            "bptt or gamma_online with model.type gamma (online is the LIF three-factor rule)",
        ),
        (
            t.learner != "gamma_online" or t.loss == "per_step",
            "train.loss",
            "per_step with train.learner gamma_online (it needs a loss at every time step)",
        ),
        (
            m.type != "gamma" or m.delays == "none",
            "model.delays",
            "none with model.type gamma (its buckets are the delays; leave model.delays out)",
        ),
        (m.type != "gamma" or not m.recurrent, "model.recurrent", "false with model.type gamma (feed-forward only)"),
        (m.type != "gamma" or m.density == 1, "model.density", "1 with model.type gamma (dense layers only)"),
        (not m.conv or m.type == "gamma", "model.conv", "[] unless model.type is gamma (convolutional gamma layers)"),
        (
            not m.conv or d.task in CAMERA_TASKS,
            "model.conv",
            f"[] unless data.task is a camera task ({', '.join(CAMERA_TASKS)})",
        ),
        (all(c >= 1 for c in m.conv), "model.conv", "a list of positive channel counts"),
        (m.conv_kernel >= 1 and m.conv_stride >= 1, "model.conv_kernel/conv_stride", "integers >= 1"),
        (
            m.type != "gamma" or m.readout == "li",
            "model.readout",
            "li with model.type gamma (its readout is a linear read of the buckets)",
        ),
        (m.type != "gamma" or t.precision == "fp32", "train.precision", "fp32 with model.type gamma"),
        (
            t.learner != "online" or t.loss == "per_step",
            "train.loss",
            "per_step with train.learner online (the online rule needs a loss at every time step)",
        ),
        (
            t.learner != "online" or m.readout == "li",
            "model.readout",
            "li with train.learner online (the online rule needs a loss at every step on a leaky-integrator readout)",
        ),
        (
            t.learner != "online" or t.precision == "fp32",
            "train.precision",
            "fp32 with train.learner online (it runs its own step-by-step fp32 forward pass)",
        ),
        (
            m.type == "gamma" or (t.loss == "spike_count") == (m.readout == "lif"),
            "train.loss",
            "spike_count exactly when model.readout is lif (a spike count needs a spiking readout)",
        ),
    ]
    for ok, key, expected in checks:
        if not ok:
            raise ConfigError(f"{key}: expected {expected}")
    return cfg


def from_dict(raw: Any, source: str = "config") -> Config:
    """Build a :class:`Config` from a nested mapping (as read from YAML)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections data, model, train")
    cfg = Config()
    for section, body in raw.items():
        if section == "name":
            apply(cfg, "name", body)
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}: expected name, data, model, train")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping")
        for key, value in body.items():
            apply(cfg, f"{section}.{key}", value)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), apply ``--set`` overrides, validate."""
    if path is None:
        cfg = Config()
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{p}: not valid YAML{where}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read config ({e.__class__.__name__})") from None
        cfg = from_dict(raw, str(p))
    for item in overrides:
        apply(cfg, *parse_set(item))
    return validate(cfg)
