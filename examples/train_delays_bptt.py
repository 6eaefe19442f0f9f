"""Train a spiking network with learnable axonal delays by BPTT, in a plain PyTorch loop.

The task is timing-only CCISI (``st.timing_task``): each pair of input channels fires one spike each, and only
the lag between the two carries the class, so spike counts are at chance and the network has to use its
delays (or long memory) to read it. The loop is ordinary PyTorch: Adam with one learning rate per parameter
group (weights, time constants, delays), ``st.bptt_step`` on each batch, ``st.evaluate_model`` on a held-out split.

Run::

    python examples/train_delays_bptt.py            # 16 channels, 5 classes, about 10 s on 2 cores
    python examples/train_delays_bptt.py --tiny     # 8 channels, 3 classes, a few seconds
    python examples/train_delays_bptt.py --delays none   # the same network without delays, for comparison
"""

import argparse

import torch

import spiketime as st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a small task that trains in a few seconds")
    ap.add_argument("--delays", default="axonal", choices=["axonal", "synaptic", "none"])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    if args.tiny:
        task = dict(channels=8, duration=60.0, num_classes=3, noise=2.0)
        n_train, n_test, hidden, delay_max, epochs = 512, 150, [32], 15.0, 10
    else:
        task = dict(channels=16, duration=100.0, num_classes=5, noise=2.0)
        n_train, n_test, hidden, delay_max, epochs = 4000, 1000, [64], 30.0, 15
    epochs = args.epochs or epochs

    # x: [N, T, C] 0/1 spikes at dt = 1 ms, y: [N] class indices; different seeds give independent splits
    x_train, y_train = st.timing_task("ccisi", "timing", n_samples=n_train, seed=args.seed + 1, **task)
    x_test, y_test = st.timing_task("ccisi", "timing", n_samples=n_test, seed=args.seed + 2, **task)
    n_in, n_out = task["channels"], task["num_classes"]

    net = st.SpikingNetwork(n_in, n_out, hidden=hidden, dt=1.0, delays=args.delays, delay_max=delay_max, seed=args.seed)
    # delays are in ms and need a much larger step than the weights
    lrs = {"weights": 2e-2, "time_constants": 1e-2, "delays": 0.5}
    optimizer = torch.optim.Adam([{"params": ps, "lr": lrs[name]} for name, ps in net.param_groups().items() if ps])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

    order = torch.Generator().manual_seed(args.seed)
    for epoch in range(epochs):
        net.train()
        total, n = 0.0, 0
        for idx in st.batches(len(y_train), 32, order):  # shuffled index batches
            x = st.time_major(x_train[idx])  # [B, T, C] -> [T, B, C]
            loss = st.bptt_step(net, x, y_train[idx], optimizer, loss="max", grad_clip=1.0)
            total, n = total + loss * len(idx), n + len(idx)
        scheduler.step()
        print(f"epoch {epoch + 1:2d}  train loss {total / n:.3f}")

    test = st.evaluate_model(net, st.Split(x_test, y_test), loss="max")
    print(f"test accuracy {test['accuracy']:.3f}  (chance {1 / n_out:.3f})")
    print(f"test loss {test['loss']:.3f}  hidden spikes per sample {test['spikes_per_sample']:.1f}")
    for layer, d in net.learned_delays().items():  # ms, one per input channel (axonal)
        print(
            f"delays {layer}: mean {d.mean():.2f} ms  std {d.std():.2f} ms  max {d.max():.2f} ms "
            f"(of {delay_max:g})  moved > 1 ms: {(d > 1.0).float().mean():.2f}"
        )


if __name__ == "__main__":
    main()
