"""maskopt's imports read from the source (imports inside functions count too): the
graph the layering test checks, and what each stage script needs, for dvc.yaml's deps."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "maskopt"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """A module's folder under src/maskopt (``__init__``/``__main__`` for the root's)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_in(path: Path) -> set[str]:
    """The maskopt modules a file imports, anywhere in its body."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names if a.name.startswith("maskopt")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("maskopt"):
            targets.add(node.module)
            # `from maskopt.models import losses` imports the module maskopt.models.losses
            package = SRC.parent / node.module.replace(".", "/")
            targets |= {f"{node.module}.{a.name}" for a in node.names
                        if (package / a.name).exists() or (package / f"{a.name}.py").exists()}
    return targets


def imports() -> dict[str, set[str]]:
    """Every maskopt module → the maskopt modules it imports."""
    return {module_name(path): imports_in(path) - {module_name(path)}
            for path in sorted(SRC.rglob("*.py"))}


def needed_by(script: Path) -> set[str]:
    """Every maskopt module a script may import, directly or through others, including
    the packages whose ``__init__`` importing them runs."""
    graph, seen = imports(), set()
    todo = list(imports_in(script))
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            name = ".".join(parts[:depth])
            if name not in seen and name in graph:
                seen.add(name)
                # maskopt/__init__ imports only inside __getattr__, for `maskopt.remove`,
                # which importing a submodule never calls
                todo += graph[name] if name != "maskopt" else []
    return seen


def source_of(module: str) -> str:
    """What a stage depends on to see a module change: its folder, or the root file."""
    unit = unit_of(module)
    if unit == "__init__":
        return "src/maskopt/__init__.py"
    return f"src/maskopt/{unit}"
