"""fastbp's import graph, read from the source, and its cycles.

Reads src/fastbp/**/*.py with ast and the (c)imports of *.pyx/*.pxd with a
regex (a .pyx and its .pxd are one module); keeps the imports of fastbp
modules, absolute or relative, module-level or function-local (marked
"(local)"); prints one line per module, then every elementary cycle, local
imports included.  Nothing is imported or executed.

    python ci/import_graph.py [--src src] [--dot]

Exit status: 0 "no cycles", 1 cycles (listed), 2 the source could not be
read.  --dot prints Graphviz instead (local imports dashed, cycles red), exit 0.
"""

import argparse
import ast
import pathlib
import re
import sys

PKG = "fastbp"
# from X (c)import names | (c)import X, Y: in .pyx/.pxd, where ast cannot go
CY_IMPORT = re.compile(r"^([ \t]*)(?:from[ \t]+(\.*)([\w.]*)[ \t]+c?import[ \t]+(\([^)]*\)|[^\n#]*)"
                       r"|c?import[ \t]+([^\n#]+))", re.M)


def module_name(path, root):
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def py_imports(text):
    """(dots, module, names or None for `import module`, local?) of each import."""
    out = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((0, a.name, None, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                out.append((child.level, child.module or "", [a.name for a in child.names], local))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(text), False)
    return out


def cy_imports(text):
    out = []
    for m in CY_IMPORT.finditer(text):
        indent, dots, frm, names, plain = m.groups()
        local = bool(indent)  # indented: inside a def (or a class/if), taken as local
        if plain is not None:
            out.extend((0, n.split()[0], None, local) for n in plain.split(",") if n.strip())
        else:
            names = [n.split()[0] for n in names.strip("()").split(",") if n.strip()]
            out.append((len(dots), frm, names, local))
    return out


def build(src):
    root = pathlib.Path(src)
    files = sorted(p for ext in ("py", "pyx", "pxd") for p in (root / PKG).rglob(f"*.{ext}"))
    if not files:
        raise FileNotFoundError(f"no {PKG} sources under {root}")
    graph = {module_name(p, root): {} for p in files}  # module -> {imported: local?}
    for p in files:
        mod, is_pkg = module_name(p, root), p.stem == "__init__"
        text = p.read_text(encoding="utf-8")
        for level, frm, names, local in (py_imports if p.suffix == ".py" else cy_imports)(text):
            if level:  # relative: from the package (a package's own, for __init__)
                base = mod.split(".")[:mod.count(".") + 1 + is_pkg - level]
                frm = ".".join(base + ([frm] if frm else []))
            if frm != PKG and not frm.startswith(PKG + "."):
                continue
            # `from P import n` imports the module P.n when there is one, else P
            subs = [f"{frm}.{n}" for n in names or () if f"{frm}.{n}" in graph]
            for t in subs + ([frm] if names is None or len(subs) < len(names) else []):
                if t != mod:  # a module-level import wins over a local one
                    graph[mod][t] = graph[mod].get(t, True) and local
    return graph


def cycles(graph):
    """Every elementary cycle once, from its smallest module (a DFS from each)."""
    found = []

    def dfs(start, node, path):
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append(path + [start])
            elif nxt > start and nxt not in path:
                dfs(start, nxt, path + [nxt])

    for start in sorted(graph):
        dfs(start, start, [start])
    return found


def dot(graph, found):
    red = {(c[i], c[i + 1]) for c in found for i in range(len(c) - 1)}
    lines = ["digraph fastbp {", "  rankdir=LR; node [shape=box, fontsize=10];"]
    for mod in sorted(graph):
        lines.append(f'  "{mod}";')
        for t, local in sorted(graph[mod].items()):
            style = ", ".join(s for s, on in (("style=dashed", local), ("color=red", (mod, t) in red))
                              if on)
            lines.append(f'  "{mod}" -> "{t}"' + (f" [{style}]" if style else "") + ";")
    return "\n".join(lines + ["}"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(pathlib.Path(__file__).resolve().parents[1] / "src"),
                        help="the directory holding the fastbp package (default: the repo's src)")
    parser.add_argument("--dot", action="store_true", help="print Graphviz instead")
    args = parser.parse_args(argv)
    try:
        graph = build(args.src)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        print(f"import_graph: cannot read the source: {exc}", file=sys.stderr)
        return 2
    found = cycles(graph)
    if args.dot:
        print(dot(graph, found))
        return 0
    for mod in sorted(graph):
        deps = ", ".join(t + (" (local)" if local else "") for t, local in sorted(graph[mod].items()))
        print(f"{mod}: {deps or '-'}")
    print(f"\n{len(found)} cycle(s):" if found else "\nno cycles")
    for c in found:
        print("  " + c[0] + "".join(f" -> {b}" + (" (local)" if graph[a][b] else "")
                                     for a, b in zip(c, c[1:])))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
