"""Build the HTML API reference of spiketime's public modules from their docstrings, with pdoc.

    python docs/build_api.py                      # -> docs/api/index.html (docs/api/ is not tracked)
    python docs/build_api.py --out /tmp/api       # elsewhere (.ci/run builds into a temporary folder)

Documented: ``spiketime`` and its public packages (``functional``, ``kernels``, ``nn``, ``learning``,
``hardware``, ``export``, ``data``, ``evaluate``, ``surrogate``, ``errors``, ``files``, ``progress``: the names
of ``spiketime.SUBPACKAGES``), never the application ``spiketime.app``. Docstrings are reStructuredText; two
things pdoc's reST reader does not do are done first: ``:func:`~a.b.c``` is read as ``:func:`a.b.c``` and a
paragraph ending in ``::`` (a literal block follows) ends in ``:``.

The build fails (exit 1) on any Python warning raised while it imports and renders the modules (each is
listed), and on any name of ``spiketime.__all__`` or of a public package's ``__all__`` without a docstring
(listed one per line as ``missing docstring: module.name``; ``--no-missing-docstrings-fail`` lists them and
exits 0). A name's docstring is its own (not one inherited from a base class, not the constructor signature
that ``dataclass`` or ``NamedTuple`` writes); a constant's is the string literal right after its assignment in
the module that defines it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import re
import sys
import types
import warnings
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "api"
APP = "spiketime.app"


def public_packages() -> list[str]:
    import spiketime

    return [f"spiketime.{name}" for name in spiketime.SUBPACKAGES]


# ---------------------------------------------------------------------------------------------------- docstrings


def _own_class_doc(cls: type) -> str:
    """``cls``'s own docstring, without the signature that dataclass and NamedTuple write when there is none."""
    doc = cls.__dict__.get("__doc__") or ""
    if dataclasses.is_dataclass(cls):
        try:
            if doc == cls.__name__ + str(inspect.signature(cls)).replace(" -> None", ""):
                return ""
        except (TypeError, ValueError):
            pass
    fields = cls.__dict__.get("_fields")
    if issubclass(cls, tuple) and fields is not None and doc == f"{cls.__name__}({', '.join(fields)})":
        return ""
    return doc.strip()


def _imported_from(module: types.ModuleType, name: str) -> str | None:
    """The module that ``module`` takes ``name`` from: its lazy name table (``_NAMES``) or a ``from X import``."""
    lazy = getattr(module, "_NAMES", None)
    if isinstance(lazy, dict) and lazy.get(name):
        return lazy[name]
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            if node.level:  # relative import
                base = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                return f"{base}.{node.module}" if node.module else base
            return node.module
    return None


def variable_docstring(module: types.ModuleType, name: str, _seen: frozenset = frozenset()) -> str:
    """The docstring of constant ``name`` of ``module``: the string after its assignment where it is defined
    (following re-exports from module to module)."""
    from pdoc import doc_ast

    if module.__name__ in _seen:
        return ""
    doc = doc_ast.walk_tree(module).var_docstrings.get(name, "")
    if doc:
        return doc.strip()
    source = _imported_from(module, name)
    if not source or source == module.__name__:
        return ""
    try:
        origin = importlib.import_module(source)
    except ImportError:
        return ""
    return variable_docstring(origin, name, _seen | {module.__name__})


def docstring_of(module: types.ModuleType, name: str) -> str:
    """The docstring of ``module.name`` by the rules of the module docstring ("" when it has none)."""
    obj = getattr(module, name)
    if isinstance(obj, types.ModuleType):
        return (obj.__doc__ or "").strip()
    if inspect.isclass(obj):
        return _own_class_doc(obj)
    if callable(obj) and (inspect.isroutine(obj) or hasattr(obj, "__wrapped__")):
        return (getattr(obj, "__doc__", None) or "").strip()
    return variable_docstring(module, name)


def missing_docstrings() -> list[str]:
    """``module.name`` for every name of ``spiketime.__all__`` and of a public package's ``__all__`` without a
    docstring, sorted."""
    missing = set()
    for modname in ["spiketime", *public_packages()]:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            if not docstring_of(module, name):
                missing.add(f"{modname}.{name}")
    return sorted(missing)


# ---------------------------------------------------------------------------------------------------- pdoc


def _rst_for_pdoc(text: str) -> str:
    """What pdoc's reST reader leaves as written: ``:role:`~a.b``` (Sphinx's short form) and ``::`` before a
    literal block (pdoc reads the indented block as code already)."""
    text = re.sub(r"(:(?:mod|func|data|const|class|meth|attr|exc|obj):`)~", r"\1", text)
    text = re.sub(r"^([ \t]*)::[ \t]*$", "", text, flags=re.MULTILINE)  # a lone "::" line
    text = re.sub(r"[ \t]+::[ \t]*$", ":", text, flags=re.MULTILINE)  # "text ::" -> "text:"
    return re.sub(r"(\S)::[ \t]*$", r"\1:", text, flags=re.MULTILINE)  # "Example::" -> "Example:"


def _configure_pdoc() -> None:
    """pdoc with reST docstrings, plus three things it does not do by itself (module docstring, and below)."""
    import pdoc.doc
    import pdoc.docstrings
    import pdoc.render

    pdoc.render.configure(docformat="restructuredtext", footer_text="spiketime API reference")

    convert = pdoc.docstrings.convert
    if not getattr(convert, "_spiketime", False):

        def convert_rst(docstring: str, docformat: str, source_file: Path | None) -> str:
            return convert(_rst_for_pdoc(docstring), docformat, source_file)

        convert_rst._spiketime = True
        pdoc.docstrings.convert = convert_rst

    # A re-exported constant shows the docstring it has where it is defined (pdoc looks only in the module
    # whose page it renders).
    own = pdoc.doc.Module.__dict__["_var_docstrings"].func

    def var_docstrings(self: pdoc.doc.Module) -> dict[str, str]:
        docs = dict(own(self))
        for name in getattr(self.obj, "__all__", []):
            if name not in docs and not callable(getattr(self.obj, name, None)):
                doc = variable_docstring(self.obj, name)
                if doc:
                    docs[name] = doc
        return docs

    prop = cached_property(var_docstrings)
    prop.__set_name__(pdoc.doc.Module, "_var_docstrings")
    pdoc.doc.Module._var_docstrings = prop


def _namedtuples_in_their_modules() -> None:
    """``NamedTuple`` constructors are compiled in a namespace of their own, where pdoc cannot resolve their
    string annotations (``from __future__ import annotations``) and warns; give them their class's module."""
    for modname in ["spiketime", *public_packages()]:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, tuple) and hasattr(obj, "_fields"):
                new = obj.__new__  # the function (the class holds it as a staticmethod)
                if isinstance(new, types.FunctionType) and new.__module__ != obj.__module__:
                    new.__module__ = obj.__module__


def build(out: Path) -> tuple[list[str], list[str], list[str]]:
    """Render the reference into ``out``; returns (warnings raised, pages written, names missing a docstring)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import pdoc

        _configure_pdoc()
        _namedtuples_in_their_modules()
        # spiketime and, recursively, the modules its __all__ names (pdoc's walk), less the application
        specs = ["spiketime", f"!{re.escape(APP)}(\\..*)?$"]
        pdoc.pdoc(*specs, output_directory=out)
        missing = missing_docstrings()
    raised = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    pages = sorted(str(p.relative_to(out)) for p in out.rglob("*.html"))
    return raised, pages, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the HTML API reference of spiketime with pdoc.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument(
        "--no-missing-docstrings-fail",
        action="store_true",
        help="list public names without a docstring but do not fail because of them",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))  # the working tree's spiketime, installed or not
    raised, pages, missing = build(args.out)
    if any(p.startswith("spiketime/app") for p in pages):
        print("error: the reference documents spiketime.app, the application", file=sys.stderr)
        return 1
    absent = [m for m in ["spiketime", *public_packages()] if f"{m.replace('.', '/')}.html" not in pages]
    if absent:
        print(f"error: no page for {', '.join(absent)} (is it in spiketime.__all__?)", file=sys.stderr)
        return 1
    for w in raised:
        print(f"warning: {w}", file=sys.stderr)
    for name in missing:
        print(f"missing docstring: {name}", file=sys.stderr)
    print(
        f"API reference: {args.out / 'index.html'} ({len(pages)} pages); {len(raised)} warnings, "
        f"{len(missing)} public names without a docstring"
    )
    if raised:
        print(f"error: {len(raised)} warnings while building the API reference (listed above)", file=sys.stderr)
        return 1
    if missing and not args.no_missing_docstrings_fail:
        print(f"error: {len(missing)} public names without a docstring (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
