"""Models, optimisers and schedulers from a config: the application's translation of config keys into the
library's plain arguments (:class:`~spiketime.nn.network.SpikingNetwork`,
:class:`~spiketime.nn.gamma.GammaNetwork`)."""

from __future__ import annotations

import inspect

import torch

from spiketime.app.config import Config, ModelConfig
from spiketime.app.splits import frame_shape
from spiketime.nn.gamma import GammaNetwork
from spiketime.nn.network import SpikingNetwork

Model = SpikingNetwork | GammaNetwork
# the keyword arguments of SpikingNetwork that are model.* keys of the same name
LIF_KEYS = tuple(
    n
    for n, p in inspect.signature(SpikingNetwork).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "seed"
)


def lif_network(n_in: int, n_out: int, cfg: ModelConfig, dt: float, seed: int = 0) -> SpikingNetwork:
    """The :class:`SpikingNetwork` of ``model.*`` keys ``cfg`` at time step ``dt`` (ms), weights seeded by ``seed``."""
    return SpikingNetwork(n_in, n_out, list(cfg.hidden), dt, seed=seed, **{k: getattr(cfg, k) for k in LIF_KEYS})


def build_model(cfg: Config, n_in: int, n_out: int) -> Model:
    """The network of ``cfg.model.type`` at time step ``cfg.data.dt``, weights seeded by ``train.seed``."""
    m = cfg.model
    if m.type == "gamma":
        return GammaNetwork(
            n_in,
            n_out,
            list(m.hidden),
            cfg.data.dt,
            K=m.buckets,
            tau_1=m.bucket_tau,
            factor=m.bucket_factor,
            bucket_weights=m.bucket_weights,
            learn_taus=m.learn_bucket_tau,
            theta0=m.sd_theta,
            tau_ref=m.tau_ref,
            tau_th=m.tau_th,
            m_f=m.threshold_gain,
            seed=cfg.train.seed,
            weight_scale=m.weight_scale,
            conv=list(m.conv),
            input_shape=frame_shape(cfg.data) if m.conv else None,
            conv_kernel=m.conv_kernel,
            conv_stride=m.conv_stride,
        )
    return lif_network(n_in, n_out, m, cfg.data.dt, seed=cfg.train.seed)


def build_optimizer(model: Model, cfg: Config) -> torch.optim.Optimizer:
    """Adam with separate learning rates for weights, time constants and delays."""
    lrs = {"weights": cfg.train.lr, "time_constants": cfg.train.lr_tau, "delays": cfg.train.lr_delay}
    groups = [{"params": ps, "lr": lrs[k], "name": k} for k, ps in model.param_groups().items() if ps]
    return torch.optim.Adam(groups)


def build_scheduler(opt: torch.optim.Optimizer, cfg: Config) -> torch.optim.lr_scheduler.LRScheduler | None:
    t = cfg.train
    if t.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(t.epochs, 1))
    if t.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma)
    return None


def build_scaler(cfg: Config, device: str | None = None) -> torch.amp.GradScaler:
    """The loss scaler: enabled for ``train.precision: fp16``, a pass-through otherwise."""
    dev = torch.device(device or cfg.train.device).type
    return torch.amp.GradScaler(dev, enabled=cfg.train.precision == "fp16")
