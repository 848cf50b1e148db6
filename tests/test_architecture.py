"""The folder layout is the architecture: packages sit on floors, and imports only point down.

``FLOORS`` is the one place the order is written (docs/architecture.md explains it); a new upward arrow or a new
circle between modules fails here. Every import counts, also those inside functions (deferred imports)."""
import ast
from pathlib import Path

from conftest import REPO_ROOT

# Lowest first. A package may import the packages of lower floors; packages on one floor do not import each other.
FLOORS = [
    ['vfsr_io', 'vfsr_registry'],  # files, checkpoints, stop signals; the plugin's registration helper
    ['vfsr_compat'],  # repairs of stock basicsr/facexlib, imported before them
    ['vfsr_face'],  # detection, landmarks, parsing masks, the astronaut template, synthetic face videos
    ['vfsr_data'],  # datasets, degradations, resizing
    ['vfsr_arch'],  # networks
    ['vfsr_eval'],  # metrics and vfsr-evaluate
    ['vfsr_models'],  # training: models, losses, optimizers
    ['vfsr_restore'],  # vfsr-restore: the video workflow over restorers
    ['vfsr_cli', 'vfsr_app'],  # entry points: train/test option checking, the web page
    ['datasets_prep'],  # scripts: nothing imports them
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def package_of(module: str) -> str:
    return module.split('.')[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict[str, set[str]]:
    """Our modules -> the modules of ours each one imports (``from package import module`` counts as the module)."""
    paths = [path for package in FLOOR for path in
             ([REPO_ROOT / f'{package}.py'] if (REPO_ROOT / f'{package}.py').is_file()
              else sorted((REPO_ROOT / package).rglob('*.py')))]
    modules = {module_name(path): path for path in paths}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.update(f'{node.module}.{alias.name}' if f'{node.module}.{alias.name}' in modules
                               else node.module for alias in node.names)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def test_imports_point_down_the_floors():
    upward = [f'{source} -> {target}' for source, targets in import_graph().items() for target in sorted(targets)
              if package_of(target) != package_of(source)
              and FLOOR[package_of(target)] >= FLOOR[package_of(source)]]
    assert not upward, 'imports that point up or sideways (see FLOORS):\n' + '\n'.join(upward)


def test_no_circle_between_modules():
    graph, state, circles = import_graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 'open'
        for target in sorted(graph[module]):
            if state.get(target) == 'open':
                circles.append(' -> '.join(path[path.index(target):] + [module, target]))
            elif target not in state:
                visit(target, path + [module])
        state[module] = 'done'

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not circles, 'import circles:\n' + '\n'.join(circles)


def test_every_package_has_a_floor():
    packages = {path.parent.name for path in REPO_ROOT.glob('*/__init__.py')} | {
        path.stem for path in REPO_ROOT.glob('vfsr_*.py')}
    assert packages - {'tests', 'benchmarks'} == set(FLOOR)
