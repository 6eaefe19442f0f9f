import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

TINY = [
    "data.channels=6",
    "data.num_classes=3",
    "data.duration=40",
    "data.n_train=60",
    "data.n_val=30",
    "data.n_test=30",
    "model.hidden=[8]",
    "model.delay_max=8",
    "train.epochs=3",
    "train.batch_size=16",
    "train.progress=false",
]


@pytest.fixture
def tiny_sets() -> list[str]:
    """--set overrides for a run of a few seconds."""
    out = []
    for s in TINY:
        out += ["--set", s]
    return out


def one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    """Assert that the raised error's message is one line containing every needle; return it."""
    msg = str(e.value)
    assert "\n" not in msg, msg
    for s in needles:
        assert s in msg, msg
    return msg


def interrupt_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``fit`` stop with KeyboardInterrupt right after it wrote its first checkpoint.pt (undo with
    ``monkeypatch.undo()``)."""
    from pathlib import Path

    from spiketime.app import fit as trainer

    save = trainer.torch_save_atomic

    def save_then_stop(obj, path):
        save(obj, path)
        if Path(path).name == trainer.CHECKPOINT:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "torch_save_atomic", save_then_stop)
