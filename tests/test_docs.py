"""docs/config.md is generated from spiketime.app.config by docs/gen_config_md.py and must be up to date."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from spiketime.app import config

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_config_md", DOCS / "gen_config_md.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_md_is_up_to_date(tmp_path):
    out = tmp_path / "config.md"
    assert _gen().main([str(out)]) == 0
    assert out.read_text() == (DOCS / "config.md").read_text(), (
        "docs/config.md is stale: run `python docs/gen_config_md.py`"
    )


def test_every_config_key_has_a_description():
    keys = {f"{s}.{f.name}" for s, cls in config.SECTIONS.items() for f in dataclasses.fields(cls)}
    keys |= {f.name for f in dataclasses.fields(config.Config) if f.name not in config.SECTIONS}
    descriptions = _gen().DESCRIPTIONS
    assert set(descriptions) == keys
    for key, (units, meaning) in descriptions.items():
        assert units.strip() and meaning.strip() and "\n" not in meaning, key
    text = (DOCS / "config.md").read_text()
    for key in keys:
        assert f"| `{key}` |" in text, key


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]


@pytest.mark.parametrize(
    "doc", ["README.md", "docs/online.md", "docs/api.md"]
)  # whole examples (other docs show fragments)
def test_python_examples_in_the_docs_run(doc):
    """Every ```python block of these docs runs as written (blocks of one file share a namespace, in order)."""
    path = Path(__file__).resolve().parents[1] / doc
    if not path.exists():
        pytest.fail(f"{doc} is missing")
    blocks = _python_blocks(path)
    assert blocks, f"{doc} has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, doc, "exec"), namespace)
