"""Online learning in a streaming loop: one sample at a time, one time step per call, the state carried.

``st.OnlineLearner`` runs a ``SpikingNetwork`` forward in time with three-factor eligibility traces. Each call
``learner.step(x_t, y)`` advances the network by one time step and accumulates the gradient; at the end of a
sample ``learner.flush()`` puts it into ``p.grad`` and your own ``optimizer.step()`` applies it. Nothing is
stored per time step, so the learner's memory (``learner.state_bytes()``) is the same for any sequence length.
With ``--update-every K`` the loop also updates every ``K`` steps inside a sample (the traces go on).

Run::

    python examples/online_streaming.py            # 600 samples of 80 steps, about 20 s
    python examples/online_streaming.py --tiny     # 120 samples of 40 steps, a few seconds
"""

import argparse

import torch

import spiketime as st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a short stream that runs in a few seconds")
    ap.add_argument("--update-every", type=int, default=None, help="also update every K steps inside a sample")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    n_samples, T = (120, 40) if args.tiny else (600, 80)
    n_in, n_out = 8, 3

    # a stream of labelled samples: ISI bursts whose intervals and spike counts carry the class
    xs, ys = st.timing_task(
        "isi",
        "rate",
        n_samples=n_samples,
        channels=n_in,
        duration=float(T),
        num_classes=n_out,
        noise=2.0,
        seed=args.seed,
    )
    net = st.SpikingNetwork(n_in, n_out, hidden=[32], dt=1.0, delays="axonal", delay_max=10.0, seed=args.seed)
    lrs = {"weights": 2e-2, "time_constants": 1e-2, "delays": 0.2}
    optimizer = torch.optim.Adam([{"params": ps, "lr": lrs[name]} for name, ps in net.param_groups().items() if ps])
    learner = st.OnlineLearner(net)  # no optimiser given: this loop owns it

    def update() -> None:
        learner.flush()  # p.grad += the gradient accumulated since the last flush
        optimizer.step()
        net.project_()  # delays back into [0, delay_max]
        optimizer.zero_grad()

    losses, hits = [], []
    for i in range(n_samples):
        x, y = xs[i], ys[i : i + 1]  # x [T, C]: one sample, streamed step by step; y [1]
        learner.reset(1, steps=T)  # a new sequence: zero state and traces; the loss averages over T steps
        summed, score = 0.0, torch.zeros(1, n_out)
        for t in range(T):
            y_t, loss_t = learner.step(x[t : t + 1], y)  # x_t [1, C] -> readout y_t [1, K], loss of this step
            summed, score = summed + float(loss_t), score + y_t
            if args.update_every and (t + 1) % args.update_every == 0 and t + 1 < T:
                update()
        update()
        losses.append(summed / T)
        hits.append(float(score.argmax(dim=1) == y))
        if (i + 1) % (n_samples // 4) == 0:
            q = n_samples // 4
            print(
                f"samples {i + 1 - q:4d}-{i + 1:4d}  mean loss {sum(losses[-q:]) / q:.3f}  "
                f"accuracy {sum(hits[-q:]) / q:.2f}"
            )

    q = n_samples // 4
    first, last = sum(losses[:q]) / q, sum(losses[-q:]) / q
    print(f"loss first quarter {first:.3f}  last quarter {last:.3f}")

    # the learner's state (neuron states, delay buffers, traces) does not grow with the sequence length
    sizes = {}
    for steps in (T, 4 * T):
        x_long = (torch.rand(steps, 1, n_in) < 0.05).float()
        learner.reset(1, steps=steps)
        for x_t in x_long:
            learner.step(x_t, ys[:1])  # no flush: this probe does not train
        sizes[steps] = learner.state_bytes()
    print("state bytes " + "  ".join(f"T={steps}: {b}" for steps, b in sizes.items()))


if __name__ == "__main__":
    main()
