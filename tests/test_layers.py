"""maskopt's modules import only downwards: shared pieces at the bottom, the stages and
the command line at the top, no cycles (imports inside functions count too)."""

from import_graph import SRC, imports, unit_of

LAYERS = [
    {"core"},        # errors, files, images, devices, classes
    {"pipeline"},    # params, the stages' paths and params, MLflow, running stages
    {"data"},
    {"models"},      # networks, losses, running them
    {"evaluation"},
    {"removal"},     # the Remover, its fast inference, the MLflow model around it
    {"app", "training"},  # the command line and the page; training registers the model
    {"__init__", "__main__"},
]


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


def test_the_package_root_holds_only_its_entry_points():
    assert sorted(p.name for p in SRC.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_models_evaluation_and_the_app_never_import_training():
    for module, targets in imports().items():
        if unit_of(module) in ("models", "evaluation", "removal", "app"):
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


def test_no_function_is_longer_than_a_screen():
    import ast

    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 70:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {lines}")
    assert not long, "\n".join(long)
