"""The online learners as objects driven from a plain PyTorch loop: ``learner.step(x_t, c)`` one time step at a
time with the state carried, ``learner.flush()`` puts the gradient into ``p.grad``, the caller steps its own
optimiser; ``run`` on a whole batch, in chunks; SAM as ``sam=SAM(...)``; one-line errors naming arguments."""

import copy

import pytest
import torch
import torch.nn.functional as F

from spiketime.errors import InputError
from spiketime.learning.gamma_online import GammaOnlineLearner, gamma_online_gradients, run_sequence
from spiketime.learning.losses import readout_loss
from spiketime.learning.online import OnlineLearner, online_gradients
from spiketime.learning.sam import SAM
from spiketime.nn.gamma import GammaNetwork
from spiketime.nn.network import SpikingNetwork

N_IN, N_OUT = 5, 3
EXACT = dict(rtol=1e-12, atol=1e-12)

LIF_NETS = {
    "none": dict(hidden=[6], delays="none", tau_syn=None),
    "axonal-cuba": dict(hidden=[6], delays="axonal", tau_syn=5.0),
    "synaptic-zero-reset": dict(hidden=[6], delays="synaptic", delay_mode="gaussian", reset="zero"),
    "two-layers-recurrent-sparse": dict(hidden=[8, 6], delays="synaptic", recurrent=True, density=0.5),
}


def _lif(seed: int = 1, **kw) -> SpikingNetwork:
    args = {"hidden": [6], "delays": "axonal", "delay_max": 4.0, "weight_scale": 3.0, "seed": seed} | kw
    return SpikingNetwork(N_IN, N_OUT, args.pop("hidden"), 1.0, **args).double()


def _gamma(seed: int = 1) -> GammaNetwork:
    return GammaNetwork(4, N_OUT, [6], 1.0, K=3, weight_scale=6.0, seed=seed, bucket_weights="synapse").double()


def _batch(T=20, B=4, n_in=N_IN, seed=2, p=0.3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n_in, generator=g) < p).to(dtype), torch.randint(0, N_OUT, (B,), generator=g)


def _gamma_batch(T=15, B=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, 4, generator=g, dtype=torch.float64), torch.randint(0, N_OUT, (B,), generator=g)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b) and a
    for n in a:
        torch.testing.assert_close(a[n], b[n], **EXACT, msg=n)


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------- OnlineLearner


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
@pytest.mark.parametrize("name", list(LIF_NETS))
def test_online_step_by_step_equals_run_and_online_gradients(name, feedback):
    model = _lif(**LIF_NETS[name])
    x, y = _batch()
    want = online_gradients(model, x, y, feedback=feedback, seed=3)
    model.zero_grad(set_to_none=True)
    OnlineLearner(model, feedback=feedback, seed=3).run(x, y)
    _same(_grads(model), want)

    model.zero_grad(set_to_none=True)
    learner = OnlineLearner(model, feedback=feedback, seed=3)
    learner.reset(x.shape[1], steps=x.shape[0])
    ys, losses = [], []
    for x_t in x:
        y_t, loss_t = learner.step(x_t, y)
        ys.append(y_t)
        losses.append(loss_t)
        assert all(p.grad is None for p in model.parameters())  # step accumulates privately
    learner.flush()
    _same(_grads(model), want)
    with torch.no_grad():
        out, _ = model(x)
    torch.testing.assert_close(torch.stack(ys), out, **EXACT)
    torch.testing.assert_close(torch.stack(losses).mean(), readout_loss(out, y, "per_step"), **EXACT)


@pytest.mark.parametrize("name", ["axonal-cuba", "two-layers-recurrent-sparse"])
def test_online_two_chunks_with_the_state_carried_equal_the_whole(name):
    model = _lif(**LIF_NETS[name])
    x, y = _batch(T=21)
    want = online_gradients(model, x, y)
    whole = OnlineLearner(model).run(x, y)
    model.zero_grad(set_to_none=True)

    learner = OnlineLearner(model)  # run(..., reset=False): a long stream in chunks; each chunk flushes at its end
    learner.reset(x.shape[1], steps=x.shape[0])
    first = learner.run(x[:8], y, reset=False)
    second = learner.run(x[8:], y, reset=False)
    _same(_grads(model), want)
    assert first.loss_sum + second.loss_sum == pytest.approx(whole.loss_sum, rel=1e-12)

    model.zero_grad(set_to_none=True)  # the same with step(), flushing after each chunk
    learner = OnlineLearner(model)
    learner.reset(x.shape[1], steps=x.shape[0])
    for chunk in (x[:13], x[13:]):
        for x_t in chunk:
            learner.step(x_t, y)
        learner.flush()
    _same(_grads(model), want)


def test_online_run_without_an_optimiser_adds_into_p_grad_for_the_callers_step():
    model, twin = _lif(delays="synaptic"), _lif(delays="synaptic")
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    OnlineLearner(model).run(x, y)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    once = _grads(model)
    OnlineLearner(model).run(x, y)  # adds, like backward()
    _same(_grads(model), {n: 2 * g for n, g in once.items()})
    model.zero_grad(set_to_none=True)
    OnlineLearner(model).run(x, y)
    opt.step()
    model.project_()
    OnlineLearner(twin, optimizer=torch.optim.Adam(twin.parameters(), lr=1e-2)).run(x, y)
    _same(_params(model), _params(twin))


def test_online_streaming_flush_every_k_steps_equals_run_with_update_every():
    """The caller's flush / optimizer.step() / project_() every K steps is run(update_every=K, optimizer=...): the
    learner notices the changed weights (its cached effective weights and delay kernels are rebuilt)."""
    model = _lif(delays="synaptic", tau_syn=5.0)
    twin = copy.deepcopy(model)
    x, y = _batch(T=14)
    K = 4
    res = OnlineLearner(twin, update_every=K, optimizer=torch.optim.SGD(twin.parameters(), lr=0.5)).run(x, y)
    assert res.updates == 4
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    learner = OnlineLearner(model)
    learner.reset(x.shape[1], steps=x.shape[0])
    for t, x_t in enumerate(x):
        learner.step(x_t, y)
        if (t + 1) % K == 0 or t == len(x) - 1:
            learner.flush()
            opt.step()
            model.project_()
            opt.zero_grad(set_to_none=True)
    _same(_params(model), _params(twin))
    assert any(
        not torch.equal(a, b) for a, b in zip(model.parameters(), _lif(delays="synaptic", tau_syn=5.0).parameters())
    )


def _task(n: int = 12, T: int = 25, seed: int = 0):
    """Three classes, each a fixed random spike pattern on the inputs, presented with 10 % of its spikes flipped."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(N_OUT, T, N_IN, generator=g) < 0.3).double()
    ys = torch.arange(n) % N_OUT
    flips = (torch.rand(n, T, N_IN, generator=g) < 0.1).double()
    xs = (protos[ys] - flips).abs()  # [n, T, N_IN]
    return xs, ys


def _mean_loss(model, xs, ys) -> float:
    with torch.no_grad():
        out, _ = model(xs.transpose(0, 1))
    return float(readout_loss(out, ys, "per_step"))


@pytest.mark.parametrize("sam", [None, SAM(0.05)], ids=["plain", "sam"])
def test_a_streaming_loop_with_the_users_optimiser_lowers_the_loss(sam):
    torch.manual_seed(0)
    model = _lif(seed=4, hidden=[12], delays="axonal", tau_syn=5.0)
    xs, ys = _task()
    before = _mean_loss(model, xs, ys)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    learner = OnlineLearner(model, sam=sam)
    for _ in range(6):
        for x, c in zip(xs, ys):  # one sample at a time: B = 1
            learner.reset(1, steps=x.shape[0])
            for x_t in x:
                learner.step(x_t.unsqueeze(0), c.view(1))
            learner.flush()
            opt.step()
            model.project_()
            opt.zero_grad(set_to_none=True)
    after = _mean_loss(model, xs, ys)
    print(f"\nstreaming online learner ({sam}): mean loss {before:.4f} -> {after:.4f}")
    assert after < 0.7 * before


def test_online_implicit_reset_and_unnormalised_steps():
    """Without reset(), the first step starts the sequences with steps=None: each step weighs 1, so the gradient
    is T times that of the per_step loss."""
    model = _lif(delays="none")
    x, y = _batch(T=10)
    want = online_gradients(model, x, y)
    model.zero_grad(set_to_none=True)
    learner = OnlineLearner(model)
    for x_t in x:
        learner.step(x_t, y)
    assert learner.steps is None and learner.batch_size == x.shape[1]
    learner.flush()
    _same(_grads(model), {n: g * x.shape[0] for n, g in want.items()})
    learner.flush()  # nothing accumulated since: p.grad unchanged
    _same(_grads(model), {n: g * x.shape[0] for n, g in want.items()})


# ---------------------------------------------------------------------------------------------- SAM


@pytest.mark.parametrize("adaptive", [False, True])
def test_online_sam_wrapper_equals_sam_rho_and_streaming_flush(adaptive):
    model = _lif(delays="axonal", tau_syn=5.0)
    a, b, c = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    x, y = _batch()
    OnlineLearner(a, optimizer=torch.optim.SGD(a.parameters(), lr=1.0), sam_rho=0.1, sam_adaptive=adaptive).run(x, y)
    OnlineLearner(b, optimizer=torch.optim.SGD(b.parameters(), lr=1.0), sam=SAM(0.1, adaptive)).run(x, y)
    _same(_params(a), _params(b))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters()))
    opt = torch.optim.SGD(c.parameters(), lr=1.0)  # the caller's loop: step ... flush (SAM inside), optimizer.step()
    learner = OnlineLearner(c, sam=SAM(0.1, adaptive))
    learner.reset(x.shape[1], steps=x.shape[0])
    for x_t in x:
        learner.step(x_t, y)
    learner.flush()
    opt.step()
    c.project_()
    _same(_params(c), _params(a))


@pytest.mark.parametrize("adaptive", [False, True])
def test_gamma_sam_wrapper_equals_sam_rho_and_streaming_flush(adaptive):
    model = _gamma()
    a, b, c = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    x, y = _gamma_batch()
    run_sequence(a, x, y, optimizer=torch.optim.SGD(a.parameters(), lr=1.0), sam_rho=0.1, sam_adaptive=adaptive)
    GammaOnlineLearner(b, optimizer=torch.optim.SGD(b.parameters(), lr=1.0), sam=SAM(0.1, adaptive)).run(x, y)
    _same(_params(a), _params(b))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters()))
    opt = torch.optim.SGD(c.parameters(), lr=1.0)
    learner = GammaOnlineLearner(c, sam=SAM(0.1, adaptive))
    learner.reset(x.shape[1], steps=x.shape[0])
    for x_t in x:
        learner.step(x_t, y)
    learner.flush()
    opt.step()
    c.project_()
    _same(_params(c), _params(a))


# ---------------------------------------------------------------------------------------------- GammaOnlineLearner


@pytest.mark.parametrize("gain_weight", [0.0, 0.4])
def test_gamma_step_by_step_equals_run_and_gamma_online_gradients(gain_weight):
    model = _gamma()
    x, y = _gamma_batch()
    want = gamma_online_gradients(model, x, y, gain_weight)
    res = GammaOnlineLearner(model, gain_weight=gain_weight).run(x, y, record=True)
    _same(_grads(model), want)
    assert res.updates == 1 and res.y.shape == (x.shape[0], x.shape[1], N_OUT)
    model.zero_grad(set_to_none=True)
    learner = GammaOnlineLearner(model, gain_weight=gain_weight)
    learner.reset(x.shape[1], steps=x.shape[0])
    logits = []
    for x_t in x:
        logits_t, loss_t = learner.step(x_t, y)
        logits.append(logits_t)
        assert all(p.grad is None for p in model.parameters()) and not loss_t.requires_grad
    learner.flush()
    _same(_grads(model), want)
    torch.testing.assert_close(torch.stack(logits), res.y, **EXACT)


def test_gamma_two_chunks_with_the_state_carried_equal_the_whole():
    model = _gamma()
    x, y = _gamma_batch(T=17)
    want = gamma_online_gradients(model, x, y, 0.2)
    whole, _ = run_sequence(model, x, y, gain_weight=0.2)
    model.zero_grad(set_to_none=True)
    learner = GammaOnlineLearner(model, gain_weight=0.2)
    learner.reset(x.shape[1], steps=x.shape[0])
    first = learner.run(x[:6], y, reset=False)
    second = learner.run(x[6:], y, reset=False)
    _same(_grads(model), want)
    assert first.loss_sum + second.loss_sum == pytest.approx(whole, rel=1e-12)


def test_gamma_streaming_flush_every_k_steps_equals_run_with_update_every():
    model = _gamma()
    twin = copy.deepcopy(model)
    x, y = _gamma_batch(T=11)
    K = 3
    _, updates = run_sequence(twin, x, y, 0.1, K, torch.optim.SGD(twin.parameters(), lr=0.5), 1.0)
    assert updates == 4
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    learner = GammaOnlineLearner(model, gain_weight=0.1)
    learner.reset(x.shape[1], steps=x.shape[0])
    for t, x_t in enumerate(x):
        learner.step(x_t, y)
        if (t + 1) % K == 0 or t == len(x) - 1:
            learner.flush()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.project_()
            opt.zero_grad(set_to_none=True)
    _same(_params(model), _params(twin))


def test_gamma_step_keeps_the_callers_gradients_apart():
    """p.grad holds the caller's own gradient (an auxiliary loss): step() does not touch it, flush() adds."""
    model = _gamma()
    x, y = _gamma_batch(T=5)
    want = gamma_online_gradients(model, x, y)
    w = model.layers[0].weight
    w.grad = torch.ones_like(w)
    learner = GammaOnlineLearner(model)
    learner.reset(steps=x.shape[0])
    for x_t in x:
        learner.step(x_t, y)
    assert torch.equal(w.grad, torch.ones_like(w))
    learner.flush()
    torch.testing.assert_close(w.grad, want["layers.0.weight"] + 1, **EXACT)


# ---------------------------------------------------------------------------------------------- errors


def _one_line_naming(e, *needles):
    msg = str(e.value)
    assert "\n" not in msg and "train." not in msg and "model." not in msg, msg
    for s in needles:
        assert s in msg, msg


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda: OnlineLearner(_lif(), feedback="dfa"), ("feedback", "symmetric")),
        (lambda: OnlineLearner(_lif(), update_every=0), ("update_every", ">= 1")),
        (lambda: OnlineLearner(_lif(), sam=SAM(0.1), sam_rho=0.2), ("sam", "sam_rho")),
        (lambda: OnlineLearner(_lif(readout="lif")), ("readout", "LI")),
        (lambda: GammaOnlineLearner(_gamma(), update_every=1.5), ("update_every",)),
        (lambda: GammaOnlineLearner(_gamma(), gain_weight=-1.0), ("gain_weight", ">= 0")),
        (lambda: GammaOnlineLearner(_lif()), ("model", "GammaNetwork")),
        (lambda: OnlineLearner(_lif()).run(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long)), ("x", "[T, B, N_in]")),
        (
            lambda: OnlineLearner(_lif()).step(torch.zeros(2, 3, 5), torch.zeros(2, dtype=torch.long)),
            ("x_t", "[B, N_in]"),
        ),
        (lambda: OnlineLearner(_lif()).step(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)), ("x_t", "5 inputs")),
        (lambda: OnlineLearner(_lif()).step(torch.zeros(2, 5), torch.zeros(3, dtype=torch.long)), ("target", "[B]")),
        (lambda: OnlineLearner(_lif()).reset(0), ("batch_size", ">= 1")),
        (lambda: GammaOnlineLearner(_gamma()).reset(2, steps=0), ("steps", ">= 1")),
        (lambda: run_sequence(_gamma(), torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)), ("x", "[T, B, N_in]")),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_errors_are_one_line_and_name_the_argument(make, needles):
    with pytest.raises(InputError) as e:
        make()
    _one_line_naming(e, *needles)


@pytest.mark.parametrize(
    "make", [lambda: (OnlineLearner(_lif()), N_IN), lambda: (GammaOnlineLearner(_gamma()), 4)], ids=["online", "gamma"]
)
def test_a_step_of_another_batch_size_is_an_error_until_reset(make):
    learner, n_in = make()
    learner.reset(2)
    learner.step(torch.zeros(2, n_in, dtype=torch.float64), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError) as e:
        learner.step(torch.zeros(3, n_in, dtype=torch.float64), torch.zeros(3, dtype=torch.long))
    _one_line_naming(e, "x_t", "batch_size", "reset")
    learner.reset(3)
    y_t, loss_t = learner.step(torch.zeros(3, n_in, dtype=torch.float64), torch.zeros(3, dtype=torch.long))
    assert y_t.shape == (3, N_OUT) and loss_t.dim() == 0
    assert float(loss_t) == pytest.approx(
        float(F.cross_entropy(y_t, torch.zeros(3, dtype=torch.long))), rel=1e-12
    ) or isinstance(learner, GammaOnlineLearner)


@pytest.mark.parametrize("cls", [OnlineLearner, GammaOnlineLearner], ids=["online", "gamma"])
def test_the_class_docstring_loop_runs_and_changes_the_weights(cls):
    import textwrap

    doc = cls.__doc__
    start = doc.index("::\n") + 3
    end = doc.index("\n\n    ``", start)
    code = textwrap.dedent(doc[start:end])
    assert "learner.step(" in code and "learner.flush()" in code and "opt.step()" in code
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(code, f"<{cls.__name__} docstring>", "exec"), scope)
    net, learner = scope["net"], scope["learner"]
    assert learner.batch_size == 2 and all(p.grad is None for p in net.parameters())
    fresh = (
        SpikingNetwork(5, 3, [16], delays="axonal", delay_max=4.0, seed=0)
        if cls is OnlineLearner
        else GammaNetwork(4, 3, [16], 1.0, K=3, seed=0)
    )
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), fresh.parameters()))
