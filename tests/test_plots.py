"""The figure writers produce real PNG files, headless, and leave no temporary files behind."""

from __future__ import annotations

import torch

from spiketime.evaluate.plots import plot_delay_histogram, plot_learning_curves, plot_raster

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC
    assert sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_plot_learning_curves(tmp_path):
    history = [
        {"epoch": e, "train_loss": 2.0 / (e + 1), "val_accuracy": 0.1 * e, "train_accuracy": 0.12 * e} for e in range(5)
    ]
    history.append({"epoch": 5, "train_loss": 0.3, "val_accuracy": 0.55})  # no train_accuracy
    out = tmp_path / "curves.png"
    plot_learning_curves(history, out)
    assert_png(out)


def test_plot_raster(tmp_path):
    g = torch.Generator().manual_seed(0)
    layers = {
        "input": (torch.rand(50, 20, generator=g) < 0.1).float(),
        "hidden": (torch.rand(50, 8, generator=g) < 0.2).to(torch.float64),
        "output": torch.zeros(50, 3),  # silent layer
    }
    out = tmp_path / "sub" / "raster.png"
    plot_raster(layers, dt=0.5, path=out, title="sample 0")
    assert_png(out)


def test_plot_delay_histogram(tmp_path):
    g = torch.Generator().manual_seed(1)
    delays = {"fc1": torch.rand(100, generator=g) * 10.0, "fc2": torch.rand(4, 8, generator=g) * 10.0}
    out = tmp_path / "delays.png"
    plot_delay_histogram(delays, delay_max=10.0, path=out)
    assert_png(out)
    empty = tmp_path / "none.png"
    plot_delay_histogram({}, delay_max=10.0, path=empty)
    assert_png(empty)
    # overwriting an existing file works (os.replace) and still gives a PNG
    plot_delay_histogram({"fc1": torch.zeros(3)}, delay_max=10.0, path=out)
    assert_png(out)


def test_learning_curves_show_validation_loss_and_one_epoch_on_an_epoch_axis(tmp_path):
    fig = plot_learning_curves(
        [{"epoch": 1, "train_loss": 1.2, "val_loss": 1.3, "val_accuracy": 0.4}], tmp_path / "one.png"
    )
    ax_loss, ax_acc = fig.axes
    assert [line.get_label() for line in ax_loss.get_lines()] == ["train", "validation"]
    assert [list(line.get_ydata()) for line in ax_loss.get_lines()] == [[1.2], [1.3]]
    for ax in (ax_loss, ax_acc):
        assert ax.get_xlim() == (0.0, 2.0)  # one epoch on a meaningful axis, not a dot at 1 +- 0.05
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert "1.3" in [t.get_text() for t in ax_loss.texts]  # the lone point says its value
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.1 * e} for e in range(1, 8)]
    fig = plot_learning_curves(history, tmp_path / "many.png")
    assert [list(line.get_ydata()) for line in fig.axes[0].get_lines()][1] == [1.1 / e for e in range(1, 8)]
    assert_png(tmp_path / "many.png")


def test_delay_histogram_labels_the_delay_max_line(tmp_path):
    fig = plot_delay_histogram({"hidden 1": torch.rand(50) * 10}, 30.0, tmp_path / "d.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "delay_max 30 ms" in labels and any(s.startswith("mean ") for s in labels)
