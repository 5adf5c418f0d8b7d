"""maskopt's modules import only downwards: shared pieces at the bottom, the stages and
the command line at the top, no cycles (imports inside functions count too)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "maskopt"

# Bottom to top: a module may import its own unit (package or top-level module) and the
# units of lower layers, never a unit of its own layer or above.
LAYERS = [
    {"errors", "pipeline"},
    {"io", "params", "device", "locate", "output_plan", "imaging", "signed_distance"},
    {"taxonomy", "offline_plots", "external", "repro"},
    {"data"},
    {"models"},
    {"losses", "tracking", "inference", "fast_inference"},
    {"evaluation", "removal"},
    {"server"},
    {"mlflow_model", "cli"},
    {"training"},
    {"stage", "__init__", "__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[str, set[str]]:
    """Every maskopt module → the maskopt modules it imports, anywhere in its body."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        name = module_name(path)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("maskopt")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.startswith("maskopt"):
                targets.add(node.module)
                # `from maskopt import losses` imports the module maskopt.losses
                targets |= {f"{node.module}.{a.name}" for a in node.names
                            if (SRC.parent / node.module.replace(".", "/") / a.name).exists()
                            or (SRC.parent / node.module.replace(".", "/")
                                / f"{a.name}.py").exists()}
        found[name] = targets - {name}
    return found


def layer_of(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"unit {unit!r} is in no layer of tests/test_layers.py")


def test_every_import_points_down():
    upward = []
    for module, targets in imports().items():
        for target in targets:
            if target == "maskopt":
                continue  # the package itself (its __init__ imports nothing at import time)
            own, other = unit_of(module), unit_of(target)
            if own != other and layer_of(other) >= layer_of(own):
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(sorted(upward))


def test_inference_removal_and_evaluation_never_import_training():
    for module, targets in imports().items():
        if unit_of(module) in ("inference", "removal", "evaluation"):
            assert not [t for t in targets if t.startswith("maskopt.training")], module


def test_no_module_imports_itself_back():
    graph = imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target] if target in path else [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target in graph and target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
