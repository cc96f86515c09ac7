"""Write docs/api.md, fastbp's API reference, from the docstrings.

    PYTHONPATH=src python ci/gen_api_docs.py          # rewrite docs/api.md
    PYTHONPATH=src python ci/gen_api_docs.py --check  # exit 1 if it is stale

Every public module of the package (``fastbp`` and ``fastbp.<name>``, names
without a leading underscore) is documented: its docstring, then each name
of its ``__all__`` (or, without one, each public function and class defined
in it) with its signature and docstring, classes with their public methods
and properties.  tests/test_docs.py fails when the file is out of date.
"""

import argparse
import importlib
import inspect
import pathlib
import pkgutil
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"
HEADER = ("# API reference\n\n"
          "Generated from the docstrings by `ci/gen_api_docs.py`; do not edit by hand "
          "(`PYTHONPATH=src python ci/gen_api_docs.py` rewrites it, and "
          "`tests/test_docs.py` checks that it is current).\n")


def module_names():
    import fastbp

    names = ["fastbp"]
    for info in pkgutil.iter_modules(fastbp.__path__):
        if not info.name.startswith("_"):
            names.append(f"fastbp.{info.name}")
    return sorted(names)


def _public(module):
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return sorted(name for name, obj in vars(module).items()
                  if not name.startswith("_")
                  and (inspect.isfunction(obj) or inspect.isclass(obj) or callable(obj))
                  and getattr(obj, "__module__", None) == module.__name__)


def _signature(obj):
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-f]+", "", sig)  # no addresses in default values


def _doc(obj):
    doc = inspect.getdoc(obj)
    return f"\n```text\n{doc}\n```\n" if doc else "\n*(no docstring)*\n"


def _members(cls):
    out = []
    for name, attr in sorted(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            out.append(f"\n#### `{cls.__name__}.{name}` (property)\n" + _doc(attr))
        elif isinstance(attr, (staticmethod, classmethod)):
            fn = attr.__func__
            out.append(f"\n#### `{cls.__name__}.{name}{_signature(fn)}`\n" + _doc(fn))
        elif inspect.isfunction(attr):
            out.append(f"\n#### `{cls.__name__}.{name}{_signature(attr)}`\n" + _doc(attr))
    return out


def render_module(name):
    module = importlib.import_module(name)
    parts = [f"\n## `{name}`\n", _doc(module)]
    for attr in _public(module):
        obj = getattr(module, attr)
        if inspect.ismodule(obj):
            parts.append(f"\n### `{name}.{attr}` (module)\n\nSee `{obj.__name__}`.\n")
        elif inspect.isclass(obj):
            parts.append(f"\n### class `{name}.{attr}{_signature(obj)}`\n" + _doc(obj))
            parts.extend(_members(obj))
        elif callable(obj):
            parts.append(f"\n### `{name}.{attr}{_signature(obj)}`\n" + _doc(obj))
        else:
            value = re.sub(r" at 0x[0-9a-f]+", "", repr(obj))
            parts.append(f"\n### `{name}.{attr}`\n\n`{attr} = {value}`\n")
    return "".join(parts)


def render():
    body = [HEADER, "\nModules: " + ", ".join(f"`{n}`" for n in module_names()) + ".\n"]
    body += [render_module(n) for n in module_names()]
    return "".join(body)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run PYTHONPATH=src python ci/gen_api_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
