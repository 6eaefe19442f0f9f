"""Write docs/config.md, the reference of every config key, from the dataclasses of :mod:`spiketime.app.config`.

Types, choices and defaults come from the dataclass fields; the units and one-line meaning of each key
come from :data:`DESCRIPTIONS` below (a key without a description is an error).

    python docs/gen_config_md.py            # rewrites docs/config.md
    python docs/gen_config_md.py OUT.md     # writes elsewhere (tests/test_docs.py checks it is up to date)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from spiketime.app import config

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "config.md"

# key -> (units, meaning). Keep each meaning one line; "—" when the value has no unit.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "name": (
        "—",
        "Run name: the default run directory is `runs/<timestamp>-<name>`; also the progress-bar label. "
        "A sweep replaces it by `<row>__<method>__seed<k>`.",
    ),
    # data
    "data.task": (
        "—",
        "Synthetic timing task: `isi` (class in the inter-spike intervals of each channel's 3-spike "
        "burst), `ccisi` (class in the lag between the spikes of paired channels), `coincidence` "
        "(class in which channels fire together). Built-in event sets, made in the cache on first "
        "use: `speech_digits`, `event_digits`. Real files (see docs/data.md): `shd`, `ssc`, "
        "`nmnist`, `dvs_gesture`.",
    ),
    "data.variant": (
        "—",
        "`timing`: only spike timing carries the class (a spike-count classifier is at chance); "
        "`rate`: adds class-tuned extra spikes per channel, so counts carry the class as well.",
    ),
    "data.dt": (
        "ms",
        "Simulation time step and bin width; a trial has `T = round(duration / dt)` steps, at most one "
        "spike per channel per bin.",
    ),
    "data.duration": ("ms", "Length of one trial."),
    "data.channels": (
        "—",
        "Synthetic tasks: number of input channels. 1-D event sets (speech): channels after "
        "summing groups of neighbouring channels, must divide the sensor's (e.g. 700 -> 140).",
    ),
    "data.path": (
        "—",
        "Event sets: folder (or file) holding the dataset; null = `$SPIKETIME_DATA/<task>` "
        "(default `~/.cache/spiketime/<task>`).",
    ),
    "data.pool": (
        "pixels",
        "Camera event sets: spatial sum-pooling factor (34x34 with pool 2 -> 17x17); inputs are "
        "`polarities x height x width`.",
    ),
    "data.rate_norm": (
        "—",
        "Event sets: `whole` (unchanged), `part` or `norm` (spikes deleted so that per-channel "
        "counts carry half / none of the class; see docs/data.md).",
    ),
    "data.val_fraction": (
        "—",
        "Event sets without a validation file: fraction of the training speakers "
        "(or samples / source images) held out for validation.",
    ),
    "data.num_classes": (
        "—",
        "Number of classes `K`; interval/lag levels are `(k+1) * max(4 ms, 4 dt)`, k < K, "
        "so `duration` must fit the longest pattern.",
    ),
    "data.noise": (
        "Hz",
        "Rate of the class-independent Poisson background spikes in every channel (at most `500 / dt` Hz).",
    ),
    "data.jitter": ("ms", "Standard deviation of the Gaussian jitter added to every pattern spike."),
    "data.n_train": ("samples", "Synthetic tasks: size of the training split (event sets use their files)."),
    "data.n_val": ("samples", "Size of the validation split (model selection and early stopping)."),
    "data.n_test": ("samples", "Size of the test split (evaluated once, with the best-validation model)."),
    "data.seed": (
        "—",
        "Data seed; each split is generated from its own seed derived from `(seed, split)`. "
        "The class code (intervals, lags, groups) does not depend on it.",
    ),
    # model
    "model.type": (
        "—",
        "`lif`: LIF network (every other model key except the gamma ones); `gamma`: SpikingGamma "
        "(gamma buckets -> sigma-delta neurons, linear readout of buckets; uses `hidden`, "
        "`weight_scale` and the gamma keys; `delays` defaults to `none` for it (its buckets are "
        "the delays), and it needs no recurrence, density 1, `readout: li`, fp32).",
    ),
    "model.hidden": ("neurons", "Sizes of the hidden LIF layers, input to readout (e.g. `[64, 64]`)."),
    "model.delays": (
        "—",
        "Learnable transmission delays on every projection into a hidden layer: `none`, `axonal` "
        "(one per presynaptic neuron), `synaptic` (one per connection); the readout projection "
        "has none. With `model.type: gamma` the default is `none`.",
    ),
    "model.delay_mode": (
        "—",
        "Delay kernel: `interp` (linear interpolation between the two nearest bins; graded "
        "spikes, exact gradient of the blend) or `gaussian` (hard integer shift forward, "
        "gradient of a Gaussian-smoothed shift of width `delay_sigma`).",
    ),
    "model.delay_max": (
        "ms",
        "Largest delay: delays are clamped into `[0, delay_max]` after every optimiser step "
        "and it sizes the delay buffer (must be >= `data.dt` unless `delays` is `none`).",
    ),
    "model.delay_sigma": (
        "ms",
        "Width of the smoothing Gaussian of `delay_mode: gaussian` (adds `ceil(3 sigma / "
        "dt)` buffer taps); unused by `interp`.",
    ),
    "model.delay_init": (
        "fraction of `delay_max`",
        "`[lo, hi]`, 0 <= lo <= hi <= 1: initial delays are uniform in `[lo * delay_max, hi * delay_max]`.",
    ),
    "model.tau_mem": (
        "ms",
        "Initial membrane time constant of the hidden LIF neurons (one per neuron, "
        "`beta = exp(-dt / tau_mem)`); also sets the hidden weights' init gain.",
    ),
    "model.learn_tau": (
        "—",
        "Learn the time constants (as `log tau`): hidden `tau_mem` and `tau_syn`, and "
        "`tau_out` of a LIF readout; an LI readout's `tau_out` is always fixed.",
    ),
    "model.tau_syn": (
        "ms",
        "Synaptic-current time constant of the hidden LIF neurons (current-based synapse, "
        "`i[t] = exp(-dt / tau_syn) i[t-1] + x[t]`); `null`: no synaptic current, input drives "
        "the membrane directly.",
    ),
    "model.tau_out": (
        "ms",
        "Time constant of the readout neurons (LI membrane or LIF); also sets the readout weights' init gain.",
    ),
    "model.reset": (
        "—",
        "After a spike: `subtract` removes `theta` from the membrane, `zero` clears the decayed "
        "membrane (`v[t] = beta v[t-1] (1 - s[t-1]) + (1 - beta) i[t]`).",
    ),
    "model.theta": (
        "membrane units",
        "Firing threshold of the LIF neurons (hidden and LIF readout); weight init scales with it.",
    ),
    "model.surrogate": (
        "—",
        "Surrogate derivative of the spike on `x = v - theta`: `fast_sigmoid` "
        "`1/(alpha|x|+1)^2`, `gaussian` (normal density), `arctan` "
        "`(alpha/2)/(1+(pi/2 alpha x)^2)`, `triangle` `max(0, 1-|x|/width)/width`, `sigmoid` "
        "`alpha p (1-p)` with `p = 1/(1+exp(-alpha x))`.",
    ),
    "model.surrogate_scale": (
        "see meaning",
        "The surrogate's one shape parameter (`null`: its default): "
        "`fast_sigmoid` alpha (steepness, 10), `gaussian` sigma (width in "
        "membrane units, 0.3), `arctan` alpha (steepness, 2), `triangle` "
        "width (half-width of the support in membrane units, 0.5), "
        "`sigmoid` alpha (steepness, 5).",
    ),
    "model.spike": (
        "—",
        "`hard`: the spike is `H(v - theta)` with the surrogate's gradient; `surrogate_forward`: "
        "the spike is `sigmoid(spike_steepness (v - theta))` in training (a smooth network, exact "
        "gradient; seed 004's SAST), swapped for `H` at deployment (`spiketime eval --hard`, "
        "`--hardware`). LIF networks only.",
    ),
    "model.spike_steepness": (
        "1 / membrane units",
        "Steepness `k` of the surrogate-forward sigmoid `sigmoid(k (v - theta))` (also its gradient's scale).",
    ),
    "model.weight_bits": (
        "bits",
        "Quantisation-aware training: every weight matrix (readout included) is used as "
        "its symmetric `b`-bit version `s round(W/s)`, `s = max|W| / (2^(b-1) - 1)`, "
        "with a straight-through gradient; null = float weights. LIF networks only "
        "(docs/deployment.md).",
    ),
    "model.weight_quant": (
        "—",
        "Scale of `model.weight_bits`: one per output channel (`per_channel`) or per matrix (`per_tensor`).",
    ),
    "model.weight_scale": (
        "theta per input spike",
        "Init std of the weights, `W ~ N(0, s^2)`, "
        "`s = weight_scale * theta / ((1 - beta) sqrt(fan_in))` with "
        "`beta = exp(-dt/tau_mem)` (`tau_out` for the readout): one "
        "input spike moves a membrane by ~`weight_scale * theta / "
        "sqrt(fan_in)`.",
    ),
    "model.readout": (
        "—",
        "`li`: non-spiking leaky-integrator readout (use a loss on its membrane trace); `lif`: "
        "spiking readout, requires `train.loss: spike_count`.",
    ),
    "model.backend": (
        "—",
        "How the LIF and LI layers scan over time: `auto` and `fused` run the fused kernels "
        "(one op per layer and sequence with a hand-written backward pass: compiled C on CPU, "
        "Triton on CUDA; see docs/performance.md); `reference` steps the equations under "
        "autograd (slow; the tests' oracle). All give the same results.",
    ),
    "model.recurrent": (
        "—",
        "Recurrent hidden layers: each hidden LIF layer also gets `W_rec s[t-1]`, its own "
        "spikes of the previous step (no delay, no self-connections; init std half the "
        "feedforward one). The recurrent layers always step the equations under autograd "
        "(`model.backend` applies to the others).",
    ),
    "model.density": (
        "fraction of connections",
        "Fixed sparse connectivity, 0 < density <= 1: every hidden "
        "projection (input -> hidden, hidden -> hidden, recurrent) keeps "
        "`round(density * fan_in)` (at least 1) random inputs per neuron "
        "(the same number for every neuron; drawn from `train.seed`), "
        "the others stay 0; the init std uses that fan-in. The readout "
        "projection is dense.",
    ),
    "model.buckets": (
        "buckets",
        "`type: gamma`: number K of gamma buckets (leaky integrators in cascade) on every input of every layer.",
    ),
    "model.bucket_tau": (
        "ms",
        "`type: gamma`: initial time constant tau_1 of the first bucket; `tau_k = tau_1 * bucket_factor^(k-1)`.",
    ),
    "model.bucket_factor": (
        "factor",
        "`type: gamma`: ratio of consecutive bucket time constants at init (> 1.001 when `buckets` > 1).",
    ),
    "model.bucket_weights": (
        "—",
        "`type: gamma`: bucket weights `v` per postsynaptic neuron and bucket "
        "(`neuron`, `w_ji v_jk`) or per connection and bucket (`synapse`, `w_ji v_jik`).",
    ),
    "model.learn_bucket_tau": (
        "—",
        "`type: gamma`: learn the bucket time constants (ordered, `log tau_1` and log ratios).",
    ),
    "model.sd_theta": (
        "activation units",
        "`type: gamma`: resting threshold theta0 of the sigma-delta neurons (spike height).",
    ),
    "model.tau_ref": ("ms", "`type: gamma`: decay time constant of the sigma-delta estimate yhat."),
    "model.tau_th": ("ms", "`type: gamma`: relaxation time constant of the adaptive threshold to `sd_theta`."),
    "model.threshold_gain": (
        "factor",
        "`type: gamma`: m_f, threshold increase per spike in units of the "
        "threshold (steady threshold `sd_theta + m_f y`).",
    ),
    "model.conv": (
        "channels",
        "`type: gamma` on camera data (`event_digits`, `nmnist`, `dvs_gesture`): output "
        "channels of `GammaConv2d` layers before the `hidden` dense layers (`[]`: none). "
        "The input is the `(polarity, y, x)` frame after `data.pool`.",
    ),
    "model.conv_kernel": ("pixels", "Square kernel of every `model.conv` layer (padding `conv_kernel // 2`)."),
    "model.conv_stride": ("pixels", "Stride of every `model.conv` layer."),
    # train
    "train.learner": (
        "—",
        "Learning rule: `bptt` (backpropagation through time with surrogate gradients) or "
        "`online` (three-factor eligibility traces, forward in time only, memory constant in T; "
        "needs `loss: per_step`, `model.readout: li`, fp32, one process; docs/online.md); "
        "`gamma_online` (`model.type: gamma`: autograd through one step at a time from the "
        "detached state, needs `loss: per_step`).",
    ),
    "train.feedback": (
        "—",
        "`learner: online`: learning signal of the hidden layers. `symmetric`: the readout "
        "weights, propagated down through the current step (exact for one hidden layer); "
        "`random`: a fixed random matrix per hidden layer (seeded by `train.seed`).",
    ),
    "train.update_every": (
        "time steps",
        "`learner: online`: optimiser step every K time steps (and at the end of "
        "the sequence); `null`: once per sequence (then the gradient equals "
        "BPTT's where the rule is exact). Ignored by `bptt`.",
    ),
    "train.epochs": ("epochs", "Maximum number of training epochs (0: evaluate the untrained model)."),
    "train.batch_size": (
        "samples",
        "Mini-batch size (batch order reshuffled every epoch from `(seed, epoch)`); "
        "the global batch under torchrun, split among the ranks (docs/distributed.md).",
    ),
    "train.lr": ("—", "Adam learning rate of the weights."),
    "train.lr_tau": ("log tau per step", "Adam learning rate of the time constants (learned as `log tau`)."),
    "train.lr_delay": ("ms per step", "Adam learning rate of the delays (learned in ms)."),
    "train.loss": (
        "—",
        "Cross-entropy on the readout trace `y[t]`: `max` on `max_t y`, `mean` on `mean_t y`, "
        "`last` on `y[T-1]`, `per_step` averaged over every `t` (predicts from `mean_t y`), "
        "`spike_count` on `sum_t y` (exactly when `model.readout` is `lif`).",
    ),
    "train.schedule": (
        "—",
        "Learning-rate schedule, stepped once per epoch: `none`, `cosine` (annealed to 0 over "
        "`epochs`), `step` (times `gamma` every `step_size` epochs).",
    ),
    "train.step_size": ("epochs", "Period of `schedule: step`."),
    "train.gamma": ("factor", "Learning-rate factor of `schedule: step`."),
    "train.grad_clip": ("—", "Clip the global gradient norm over all parameters to this value; `null`: no clipping."),
    "train.early_stop": ("—", "Stop when the validation accuracy has not improved for `patience` epochs."),
    "train.patience": ("epochs", "Epochs without validation improvement before early stopping."),
    "train.seed": ("—", "Training seed: weight and delay init, and the batch order of every epoch."),
    "train.device": (
        "—",
        "Torch device, e.g. `cpu`, `cuda`, `cuda:1`; under torchrun `cpu` (gloo) or `cuda` "
        "(nccl, rank r on `cuda:LOCAL_RANK`). A device this machine lacks is a one-line error "
        "before the run directory is made.",
    ),
    "train.threads": (
        "—",
        "Torch CPU threads (`torch.set_num_threads`); `null`: torch's choice (all cores). "
        "Recorded as `threads` in metrics.json: runs are bit-identical only at the same thread "
        "count (float sums are reduced in another order).",
    ),
    "train.progress": (
        "—",
        "Show progress bars on stderr: epochs, the batches of each epoch, evaluation and "
        "finalisation (`spiketime train --quiet` and sweeps turn them off).",
    ),
    "train.precision": (
        "—",
        "Arithmetic of the forward pass and loss (training and evaluation): `fp32`, or "
        "`bf16` / `fp16` under `torch.autocast` (fp16 with a `GradScaler`, checkpointed); "
        "parameters and optimiser state stay fp32 (docs/distributed.md).",
    ),
    "train.gain_weight": (
        "—",
        "`model.type: gamma`: weight of the gain loss `gain_weight * sum_l mean_(t,b,n) "
        "s_l` (hidden spike rate, straight-through gradient) added to the training loss.",
    ),
    "train.sam_rho": (
        "parameter units",
        "Sharpness-aware minimisation: each step uses the gradient at `w + e`, "
        "`e = rho g/||g||` (SAM) or `rho T^2 g/||T g||`, `T = |w| + 0.01` (ASAM); "
        "0 = plain optimiser. Every learner (BPTT runs each batch twice; the online "
        "learners re-run the steps since their last update).",
    ),
    "train.sam_adaptive": (
        "—",
        "ASAM (Kwon et al. 2021): the perturbation scaled elementwise by `|w| + 0.01` "
        "(typical `sam_rho` 0.5-2 instead of SAM's 0.05); needs `sam_rho > 0`.",
    ),
}

HEADER = """\
# Configuration reference

<!-- Generated by docs/gen_config_md.py from spiketime/app/config.py: do not edit by hand. -->

A run is configured by a YAML file with the sections `data`, `model`, `train` (and a top-level
`name`), every key optional:

```yaml
name: delays
data: {task: ccisi, variant: timing}
model: {hidden: [64], delays: axonal}
train: {epochs: 30, lr: 2.0e-3}
```

and `--set section.key=value` overrides (repeatable; the value is read as YAML, `64,64` as a list):
`spiketime train --config run.yaml --set model.delays=synaptic --set model.hidden=[64,64]`.
Every value is type-checked and validated; a bad key or value exits with code 2 and a one-line
error naming the key. `null` is YAML's None. The resolved config of a run is saved as
`OUT/config.yaml`, which reproduces the run with `spiketime train --config OUT/config.yaml`.
"""

SECTION_TITLES = {
    "": "Top level",
    "data": "`data`: the synthetic timing task (see `spiketime.data.timing`)",
    "model": "`model`: the network (input -> hidden LIF layers, feedforward or recurrent -> LI or LIF readout)",
    "train": "`train`: optimisation",
}


def type_text(tp: Any) -> str:
    """Markdown for an annotation: choices as code spans, unions with "or" (no ``|``: it splits table cells)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {type_text(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "`null`"
    return getattr(tp, "__name__", str(tp))


def default_text(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"  # YAML spelling


def fields() -> list[tuple[str, str, Any, dataclasses.Field]]:
    """``(section, dotted key, annotation, field)`` of every config key, in declaration order."""
    out = []
    top = typing.get_type_hints(config.Config)
    for f in dataclasses.fields(config.Config):
        if f.name not in config.SECTIONS:
            out.append(("", f.name, top[f.name], f))
    for section, cls in config.SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append((section, f"{section}.{f.name}", hints[f.name], f))
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    rows = fields()
    missing = [key for _, key, _, _ in rows if key not in DESCRIPTIONS]
    if missing:
        raise KeyError(f"no description for config keys {missing}: add them to DESCRIPTIONS in {__file__}")
    stale = sorted(set(DESCRIPTIONS) - {key for _, key, _, _ in rows})
    if stale:
        raise KeyError(f"descriptions of keys that do not exist: {stale}")
    parts = [HEADER]
    for section in ("", *config.SECTIONS):
        parts.append(f"\n## {SECTION_TITLES[section]}\n")
        parts.append("\n| key | type / choices | default | units | meaning |\n|---|---|---|---|---|\n")
        for sec, key, tp, f in rows:
            if sec != section:
                continue
            units, meaning = DESCRIPTIONS[key]
            parts.append(
                f"| `{key}` | {cell(type_text(tp))} | {cell(default_text(f))} | {cell(units)} | {cell(meaning)} |\n"
            )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
