"""Quantise a trained spiking network to INT8 with fixed-point membranes, simulate it in integers, export to NIR.

A ``SpikingNetwork`` with axonal delays is trained briefly by BPTT, then deployed as a chip would run it
(``st.HardwareSpec``: 8-bit per-channel weights, 16-bit fixed-point currents and membranes, integer delays,
leaks ``1 - 2^-k``). ``st.evaluate_hardware`` gives the deployed accuracy and costs; ``st.run_integer`` (int64
only) and ``st.run_fake_quant`` (the same model on float64) must agree spike for spike. Last, the float network
goes to a NIR file (``st.write_nir``) and comes back (``st.from_nir``) with the same outputs.

Run::

    python examples/quantise_export.py                 # writes quantise_export.nir in the current folder
    python examples/quantise_export.py --tiny --out /tmp/net.nir
"""

import argparse

import torch

import spiketime as st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a small task that trains in a few seconds")
    ap.add_argument("--out", default="quantise_export.nir", help="NIR file to write")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    n_train, n_test, epochs = (384, 100, 6) if args.tiny else (2000, 500, 12)
    task = dict(channels=8, duration=60.0, num_classes=3, noise=2.0)

    x_train, y_train = st.timing_task("ccisi", "timing", n_samples=n_train, seed=args.seed + 1, **task)
    test = st.Split(*st.timing_task("ccisi", "timing", n_samples=n_test, seed=args.seed + 2, **task))
    net = st.SpikingNetwork(8, 3, hidden=[32], dt=1.0, delays="axonal", delay_max=15.0, seed=args.seed)
    lrs = {"weights": 2e-2, "time_constants": 1e-2, "delays": 0.5}
    optimizer = torch.optim.Adam([{"params": ps, "lr": lrs[name]} for name, ps in net.param_groups().items() if ps])
    order = torch.Generator().manual_seed(args.seed)
    for _ in range(epochs):
        for idx in st.batches(n_train, 32, order):
            st.bptt_step(net, st.time_major(x_train[idx]), y_train[idx], optimizer, loss="max", grad_clip=1.0)

    # weights alone: W ~ s q with q integer codes in [-127, 127]
    w = net.projections[0].effective_weight.detach()
    q, s = st.quantize(w, 8, True)
    fq = st.fake_quantize(w, 8, True)  # s q in float, with a straight-through gradient (for training)
    print(
        f"int8 weight codes in [{int(q.min())}, {int(q.max())}]  max |W - s q| / max |W| "
        f"{float((w - s * q).abs().max() / w.abs().max()):.4f}  fake_quantize = s q: {torch.allclose(fq, s * q)}"
    )

    # the deployed model: int8 weights, 16-bit fixed-point membranes, integer delays
    spec = st.HardwareSpec(bits=8, per_channel=True, membrane_bits=16)
    float_acc = st.evaluate_model(net, test, loss="max")["accuracy"]
    hw = st.evaluate_hardware(net, test, "max", spec, integer=True)
    print(
        f"accuracy float {float_acc:.3f}  int8/16-bit integer {hw['test_accuracy']:.3f}  "
        f"synops per sample {hw['synops_per_sample']:.0f}  footprint {hw['footprint_bytes']} bytes "
        f"(float {hw['float_footprint_bytes']})"
    )

    x = st.time_major(test.x)  # [T, N, C] event counts
    layers = st.hardware_layers(net, spec)
    v_int, spikes_int, lsb, _ = st.run_integer(layers, x)  # int64 throughout
    out_fq, spikes_fq, _ = st.run_fake_quant(layers, x)  # the same model in real units, float64
    same = all(torch.equal(a.double(), b) for a, b in zip(spikes_int, spikes_fq))
    readout_diff = float((lsb * v_int.double() - out_fq).abs().max())
    print(f"integer vs fake-quant: identical spikes {same}  readout max diff {readout_diff:.2e}")
    with torch.no_grad():
        y_float, _, float_spikes = net(x, return_spikes=True)
    agree = float((float_spikes[0] == spikes_int[0].float()).float().mean())
    pred_float = st.class_scores(y_float, "max").argmax(dim=1)
    pred_int = st.class_scores(lsb * v_int.double(), "max").argmax(dim=1)  # readout in real units
    print(
        f"float vs integer: hidden spike agreement {agree:.4f}  same prediction "
        f"{float((pred_float == pred_int).float().mean()):.3f}"
    )

    # NIR out and back in: the same network, the same outputs
    path = st.write_nir(net, args.out)
    back = st.from_nir(path, dt=net.dt)
    with torch.no_grad():
        diff = float((net(x)[0] - back(x)[0]).abs().max())
    print(
        f"NIR {path} ({path.stat().st_size} bytes): nodes {len(st.to_nir(net).nodes)}  "
        f"round-trip max output diff {diff:.2e}"
    )


if __name__ == "__main__":
    main()
