"""Surrogate-forward spikes, the hard swap, and SAM / ASAM with every learner (BPTT, online, gamma_online)."""

import copy
import json

import pytest
import torch

from conftest import TINY, one_line
from spiketime.app import config
from spiketime.app import fit as trainer
from spiketime.app.config import ConfigError, ModelConfig
from spiketime.app.factories import lif_network
from spiketime.learning.gamma_online import gamma_online_gradients, run_sequence
from spiketime.learning.losses import readout_loss
from spiketime.learning.online import OnlineLearner, online_gradients
from spiketime.learning.sam import ASAM_ETA, perturbed, sam_perturbation
from spiketime.nn.gamma import GammaNetwork
from spiketime.nn.network import SpikingNetwork
from spiketime.surrogate import Sigmoid

N_IN, N_OUT = 5, 3


def _net(seed=1, dtype=torch.float64, **kw) -> SpikingNetwork:
    cfg = ModelConfig(**{"hidden": [6], "delays": "axonal", "delay_max": 4.0, "weight_scale": 3.0, **kw})
    return lif_network(N_IN, N_OUT, cfg, dt=1.0, seed=seed).to(dtype)


def _batch(T=20, B=4, seed=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N_IN, generator=g) < 0.3).to(dtype), torch.randint(0, N_OUT, (B,), generator=g)


# ------------------------------------------------------------------------------------ surrogate-forward


def test_sigmoid_surrogate_is_the_derivative_of_its_primitive():
    s = Sigmoid(alpha=7.0)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(s.primitive(x).sum(), x)
    torch.testing.assert_close(g, s.grad(x.detach()))
    assert float(s.primitive(torch.tensor(0.0))) == 0.5


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_surrogate_forward_network_gradient_is_exact(backend):
    """A surrogate-forward network is smooth: autograd's gradient of every parameter (weights, taus, delays) equals
    finite differences (float64), through the fused scan and the step-by-step reference."""
    net = _net(spike="surrogate_forward", spike_steepness=4.0, backend=backend, hidden=[4])
    x, _ = _batch(T=8, B=2)
    params = [p for p in net.parameters() if p.requires_grad]
    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(lambda *ps: _through(net, params, ps, x), inputs, eps=1e-6, atol=1e-5)


def _through(net, params, values, x):
    """net(x) with ``params`` replaced by ``values`` (differentiable in them)."""
    from torch.func import functional_call

    names = {id(p): n for n, p in net.named_parameters()}
    return functional_call(net, {names[id(p)]: v for p, v in zip(params, values)}, (x,))[0]


def test_surrogate_forward_spikes_are_smooth_and_the_hard_rebuild_spikes_binary():
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=[6], delay_max=4.0, weight_scale=3.0, spike="surrogate_forward", spike_steepness=5.0)
    soft = lif_network(N_IN, N_OUT, cfg, dt=1.0, seed=3)
    hard = lif_network(N_IN, N_OUT, ModelConfig(**{**cfg.__dict__, "spike": "hard"}), dt=1.0, seed=3)
    hard.load_state_dict(soft.state_dict())
    x, _ = _batch(dtype=torch.float32)
    _, _, outs_soft = soft.run(x)
    _, _, outs_hard = hard.run(x)
    s = outs_soft[0]
    assert bool(((s > 0) & (s < 1)).any()), "surrogate-forward spikes take values strictly between 0 and 1"
    h = outs_hard[0]
    assert set(h.unique().tolist()) <= {0.0, 1.0} and h.sum() > 0
    assert not hard.neurons[0].params().smooth and soft.neurons[0].params().smooth
    assert soft.neurons[0].surrogate == Sigmoid(5.0)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["model.spike_steepness=0"], "model.spike_steepness"),
        (["model.type=gamma", "model.spike=surrogate_forward"], "model.spike"),
        (["train.sam_adaptive=true"], "train.sam_adaptive"),
        (["train.sam_rho=-0.1"], "train.sam_rho"),
        (["train.sam_rho=0.1", "train.precision=fp16"], "train.precision"),
    ],
)
def test_spike_and_sam_keys_are_validated(overrides, key):
    with pytest.raises(ConfigError) as e:
        config.load(None, overrides)
    one_line(e, key)


# ------------------------------------------------------------------------------------ SAM / ASAM primitives


def test_sam_perturbation_has_norm_rho_along_the_gradient():
    w = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    for p in w:
        p.grad = torch.randn_like(p)
    e = sam_perturbation(w, rho=0.3)
    norm = torch.sqrt(sum((x**2).sum() for x in e))
    assert abs(float(norm) - 0.3) < 1e-6
    g = torch.cat([p.grad.flatten() for p in w])
    torch.testing.assert_close(torch.cat([x.flatten() for x in e]), 0.3 * g / g.norm())


def test_asam_perturbation_follows_kwon_et_al():
    w = [torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64))]
    w[0].grad = torch.randn(3, 4, dtype=torch.float64)
    t = w[0].detach().abs() + ASAM_ETA
    expected = 0.5 * t * t * w[0].grad / (t * w[0].grad).norm()
    torch.testing.assert_close(sam_perturbation(w, 0.5, adaptive=True)[0], expected)


def test_zero_gradient_gives_no_perturbation():
    w = [torch.nn.Parameter(torch.randn(3))]
    w[0].grad = torch.zeros(3)
    assert float(sam_perturbation(w, 1.0)[0].abs().sum()) == 0.0


def test_perturbed_gives_the_gradient_at_w_plus_e_and_restores_w_exactly():
    """On L(w) = 0.5 w^T A w the gradient inside the block is A (w + e); afterwards w is bit-identical."""
    torch.manual_seed(0)
    a = torch.randn(4, 4, dtype=torch.float64)
    a = a @ a.t()
    model = torch.nn.Linear(4, 1, bias=False).double()
    model.project_ = lambda: None
    w0 = model.weight.detach().clone()
    loss = lambda: 0.5 * (model.weight @ a @ model.weight.t()).sum()  # noqa: E731
    loss().backward()
    g = model.weight.grad.clone()
    with perturbed(model, 0.2):
        loss().backward()
    e = 0.2 * g / g.norm()
    torch.testing.assert_close(model.weight.grad, (w0 + e) @ a)
    assert torch.equal(model.weight.detach(), w0)


# ------------------------------------------------------------------------------------ every learner


def _sgd_step_bptt(model, x, y, rho, adaptive):
    """The expected SAM step by hand: gradient at w, perturbation, gradient there, w - lr * g'."""
    model.zero_grad()
    readout_loss(model(x)[0], y, "max").backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    params = [p for p in model.parameters() if p.requires_grad]
    eps = sam_perturbation(params, rho, adaptive)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for (n, p), e in zip([(n, p) for n, p in other.named_parameters() if p.requires_grad], eps):
            p.add_(e)
    other.project_()
    other.zero_grad()
    readout_loss(other(x)[0], y, "max").backward()
    return grads, {n: p.grad.clone() for n, p in other.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("adaptive", [False, True])
def test_bptt_epoch_with_sam_steps_with_the_gradient_at_the_perturbed_weights(adaptive):
    cfg = config.load(
        None,
        [
            *TINY,
            "train.sam_rho=0.05",
            f"train.sam_adaptive={str(adaptive).lower()}",
            "train.grad_clip=null",
            "train.batch_size=60",
        ],
    )
    splits = trainer.load_splits(cfg.data)
    model = trainer.build_model(cfg, splits.channels, splits.num_classes)
    x, y = trainer.time_major(splits.train.x, "cpu"), splits.train.y
    order = next(trainer.batches(len(splits.train), 60, trainer.epoch_generator(cfg.train.seed, 0)))
    g1, g2 = _sgd_step_bptt(copy.deepcopy(model), x[:, order], y[order], 0.05, adaptive)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer.train_epoch(model, opt, splits.train, cfg, 0)
    for n, p in model.named_parameters():
        if n in g2 and "delays" not in n:  # delays are clamped after the step
            torch.testing.assert_close(p.detach(), w0[n] - 0.1 * g2[n], rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(g1[n], g2[n]) for n in g1), "the perturbed gradient differs from the plain one"


def _perturbed_copy(model, grads: dict, rho: float, adaptive: bool):
    other = copy.deepcopy(model)
    params = [p for n, p in other.named_parameters() if p.requires_grad]
    for n, p in other.named_parameters():
        if p.requires_grad:
            p.grad = grads.get(n)
    eps = sam_perturbation(params, rho, adaptive)
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.add_(e)
    other.project_()
    return other


@pytest.mark.parametrize("adaptive", [False, True])
def test_online_learner_with_sam_steps_with_the_online_gradient_at_the_perturbed_weights(adaptive):
    model = _net(delays="axonal", tau_syn=5.0)
    x, y = _batch()
    g1 = online_gradients(model, x, y)
    g2 = online_gradients(_perturbed_copy(model, g1, 0.1, adaptive), x, y)
    assert any(not torch.allclose(g1[n], g2[n]) for n in g1), "the perturbation changes the gradient"
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    OnlineLearner(model, optimizer=opt, sam_rho=0.1, sam_adaptive=adaptive).run(x, y)
    for n, p in model.named_parameters():
        if n in g2 and "delays" not in n:
            torch.testing.assert_close(p.detach(), w0[n] - g2[n], rtol=1e-9, atol=1e-12)


class _Replay:
    """A stand-in optimiser whose k-th step sets the parameters to the k-th recorded weights."""

    def __init__(self, params, trajectory):
        self.params, self.trajectory, self.k = list(params), trajectory, 0

    def zero_grad(self, set_to_none=True):
        pass

    def step(self):
        with torch.no_grad():
            for p, w in zip(self.params, self.trajectory[self.k]):
                p.copy_(w)
        self.k += 1


def test_online_learner_with_sam_every_k_steps_reruns_only_those_steps_and_continues_unperturbed():
    """update_every=K: the first update uses the gradient of steps 0..K-1 at the perturbed weights; after each
    update the run continues from the unperturbed state, so its spikes equal those of a plain learner taking the
    same weight steps."""
    model = _net(delays="axonal")
    x, y = _batch(T=12)
    K, T = 4, 12
    trajectory = []

    def grab(learner):
        trajectory.append([p.detach().clone() for p in model.parameters()])

    # the gradient of the first K steps: the per_step loss's norm is 1/(T B), so scale a K-step run by K/T
    g1 = {n: g * K / T for n, g in online_gradients(model, x[:K], y).items()}
    g2 = {n: g * K / T for n, g in online_gradients(_perturbed_copy(model, g1, 0.1, False), x[:K], y).items()}
    assert any(not torch.allclose(g1[n], g2[n]) for n in g1), "the perturbation changes the gradient"
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    fresh = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    res = OnlineLearner(model, optimizer=opt, update_every=K, sam_rho=0.1).run(x, y, record=True, callback=grab)
    assert res.updates == 3
    first = dict(zip([n for n, _ in model.named_parameters()], trajectory[0]))
    for n in g2:
        if "delays" not in n:
            torch.testing.assert_close(first[n], w0[n] - g2[n], rtol=1e-9, atol=1e-12)
    replay = OnlineLearner(fresh, optimizer=_Replay(fresh.parameters(), trajectory), update_every=K).run(
        x, y, record=True
    )
    assert all(torch.equal(a, b) for a, b in zip(res.spikes, replay.spikes))
    torch.testing.assert_close(res.y, replay.y, rtol=0, atol=0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_gamma_online_with_sam_steps_with_the_gradient_at_the_perturbed_weights(adaptive):
    model = GammaNetwork(N_IN, N_OUT, [4], 1.0, K=3, seed=1).double()
    x, y = _batch(T=10)
    g1 = gamma_online_gradients(model, x, y)
    g2 = gamma_online_gradients(_perturbed_copy(model, g1, 0.1, adaptive), x, y)
    assert any(not torch.allclose(g1[n], g2[n]) for n in g1), "the perturbation changes the gradient"
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    run_sequence(model, x, y, optimizer=opt, sam_rho=0.1, sam_adaptive=adaptive)
    for n, p in model.named_parameters():
        if n in g2:
            torch.testing.assert_close(p.detach(), w0[n] - g2[n], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------ CLI


def test_cli_trains_surrogate_forward_with_asam_and_evaluates_the_hard_swap(tmp_path, tiny_sets, capsys):
    from spiketime.app.cli.main import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                *tiny_sets,
                "--set",
                "model.spike=surrogate_forward",
                "--set",
                "train.sam_rho=0.5",
                "--set",
                "train.sam_adaptive=true",
            ]
        )
        == 0
    )
    m = json.loads((run / "metrics.json").read_text())
    assert m["config"]["model"]["spike"] == "surrogate_forward" and m["config"]["train"]["sam_rho"] == 0.5
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--hard", "--out", str(tmp_path / "hard")]) == 0
    assert main(["eval", "--checkpoint", str(run), "--out", str(tmp_path / "soft")]) == 0
    hard = json.loads((tmp_path / "hard" / "metrics.json").read_text())
    soft = json.loads((tmp_path / "soft" / "metrics.json").read_text())
    assert hard["hard"] is True and hard["results"][0]["spike"] == "hard"
    assert soft["results"][0]["spike"] == "surrogate_forward"
    assert abs(soft["test_accuracy"] - m["test_accuracy"]) < 1e-9  # the soft eval is the training-time model
    # the hard swap is a different network: hard spikes are whole numbers
    ckpt = trainer.load_checkpoint(run)
    cfg = config.from_dict(ckpt["config"])
    config.apply(cfg, "model.spike", "hard")
    model, _ = trainer.model_from_checkpoint(ckpt, config.validate(cfg))
    splits = trainer.load_splits(cfg.data)
    res = trainer.evaluate(model, splits.test, cfg.train.loss)
    assert res["accuracy"] == hard["test_accuracy"]
    assert float(res["spikes_per_sample"]) == round(res["spikes_per_sample"] * len(splits.test)) / len(splits.test)


@pytest.mark.parametrize("learner", ["online", "gamma_online"])
def test_cli_trains_online_learners_with_sam(tmp_path, tiny_sets, learner):
    from spiketime.app.cli.main import main

    extra = [
        "train.learner=" + learner,
        "train.loss=per_step",
        "train.sam_rho=0.05",
        "train.epochs=1",
        "train.update_every=10",
    ]
    if learner == "gamma_online":
        extra += ["model.type=gamma"]
    args = ["train", "--out", str(tmp_path / learner), *tiny_sets]
    for s in extra:
        args += ["--set", s]
    assert main(args) == 0
    assert json.loads((tmp_path / learner / "metrics.json").read_text())["config"]["train"]["sam_rho"] == 0.05
