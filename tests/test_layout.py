"""The house rules of the code layout (README, "Code map"), checked on the source: every top-level
module has a docstring and a row in the README's code map, imports between the project's modules
go one way (no cycle), and no function is longer than a screen."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {p.stem: p for p in sorted(ROOT.glob("*.py"))}
MAX_FUNCTION_LINES = 60     # a function, its docstring included, fits on one screen


def _tree(name):
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))


def project_imports(name):
    """The project modules that module ``name`` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module in MODULES:
            found.add(node.module)
    return found - {name}


def import_cycles(graph):
    """Every cycle found by a depth-first walk of ``graph`` (``{module: imported modules}``)."""
    state, path, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_every_module_says_what_it_holds():
    missing = [name for name in MODULES if not ast.get_docstring(_tree(name))]
    assert not missing, f"modules without a docstring: {missing}"


def test_imports_between_modules_go_one_way():
    graph = {name: project_imports(name) for name in MODULES}
    assert graph["train"] and graph["solver"]          # the walk sees real imports
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_function_is_longer_than_a_screen():
    long = [f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name in MODULES for node in ast.walk(_tree(name))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_readme_code_map_names_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code_map = readme[readme.index("## Code map"):readme.index("### How a training step flows")]
    missing = [f"{name}.py" for name in MODULES if f"`{name}.py`" not in code_map]
    assert not missing, f"modules missing from the README's code map: {missing}"
