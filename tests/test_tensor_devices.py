"""Device discipline (issue 14): every tensor is created on the device it will be used on.

A torch factory called without ``device=`` makes a CPU tensor (or one on whatever default device is
set), which crashes the trainers on CUDA as soon as it meets a CUDA tensor. The checks read the source
(``ast``) of every module under ``backend/`` and ``training/``, so they need no GPU:

- tensor factories (``torch.zeros``, ``torch.as_tensor``, ... and aliases such as ``th.zeros`` or
  ``from torch import zeros``) must pass ``device=``; ``*_like`` and ``Tensor.new_*`` inherit the
  device of their input and are fine, ``torch.from_numpy`` always shares the array's CPU memory;
- no ``DataLoader`` is constructed in ``training/`` outside ``training/loop.py`` (whose evaluation
  loaders move batches to the device: ``training.batches.device_loader``) and ``training/datasets/``.

Deliberate exceptions go on ``ALLOWED_FACTORIES`` / ``ALLOWED_DATALOADERS`` below, each with its
reason, keyed by file, enclosing function and call (never a line number).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "training")

FACTORIES = frozenset(
    {
        "tensor", "as_tensor", "asarray", "scalar_tensor",
        "zeros", "ones", "full", "empty", "empty_strided",
        "arange", "range", "linspace", "logspace", "eye", "tril_indices", "triu_indices",
        "rand", "randn", "randint", "randperm",
        "bartlett_window", "blackman_window", "hamming_window", "hann_window", "kaiser_window",
    }
)  # fmt: skip
"""``torch`` functions that make a new tensor on the default device unless given ``device=``."""

DATALOADER_HOMES = ("training/loop.py", "training/datasets/")
"""Where ``training/`` may construct a ``DataLoader``."""


@dataclass(frozen=True)
class Allowed:
    """An exception to a rule: ``call`` (as written) inside function ``scope`` of file ``path``."""

    path: str
    scope: str
    call: str
    reason: str


ALLOWED_FACTORIES: tuple[Allowed, ...] = ()

ALLOWED_DATALOADERS: tuple[Allowed, ...] = (
    Allowed(
        "training/adaptive_flow/__init__.py", "_prepare", "DataLoader",
        "stage-2 vertex segmentation over the unaugmented training photos: vertex_segmentation moves "
        "batch['image'] and batch['parts'] to its device before using them",
    ),
    Allowed(
        "training/bench_adaptive_flow.py", "gpu_throughput", "DataLoader",
        "a shuffled training loader with 4 workers (not an evaluation loader); every batch is moved "
        "with move_to_device right after, before the timing",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One call found in a module: where it is, what it calls (as written) and its source text."""

    path: str
    line: int
    scope: str
    call: str
    text: str

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 100 else self.text[:97] + "..."
        return f"{self.path}:{self.line}: {text}  (in {self.scope})"

    def allowed_by(self, allowed: Allowed) -> bool:
        return (allowed.path, allowed.scope, allowed.call) == (self.path, self.scope, self.call)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


class _Calls(ast.NodeVisitor):
    """Every call in a module with the qualified name of the function (or class) around it."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.found: list[tuple[ast.Call, str]] = []

    def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter

    def visit_Call(self, node: ast.Call) -> None:
        self.found.append((node, ".".join(self.scope) or "<module>"))
        self.generic_visit(node)


def _calls(tree: ast.Module) -> list[tuple[ast.Call, str]]:
    """(call node, enclosing scope) of every call in ``tree``."""
    visitor = _Calls()
    visitor.visit(tree)
    return visitor.found


def _bindings(tree: ast.Module, module: str, names: frozenset[str]) -> tuple[set[str], dict[str, str]]:
    """Local names of ``module`` itself (``import torch as th``), and of its members in ``names``
    (``from torch import zeros as z``: {"z": "zeros"})."""
    modules, members = {module}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.asname for alias in node.names if alias.name == module and alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == module and node.level == 0:
            members.update(
                {alias.asname or alias.name: alias.name for alias in node.names if alias.name in names}
            )
    return modules, members


def factory_calls_without_device(source: str, path: str = "<source>") -> list[Call]:
    """Calls of the torch tensor factories (``FACTORIES``) in ``source`` that pass no ``device=``."""
    tree = ast.parse(source, filename=path)
    torch_names, members = _bindings(tree, "torch", FACTORIES)
    found = []
    for node, scope in _calls(tree):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            is_factory = func.value.id in torch_names and func.attr in FACTORIES
        else:
            is_factory = isinstance(func, ast.Name) and func.id in members
        if is_factory and not any(keyword.arg == "device" for keyword in node.keywords):
            found.append(Call(path, node.lineno, scope, _dotted(func) or "?", ast.unparse(node)))
    return found


def dataloader_constructions(source: str, path: str = "<source>") -> list[Call]:
    """Calls that construct a ``DataLoader`` (by name, alias or ``torch.utils.data.DataLoader``)."""
    tree = ast.parse(source, filename=path)
    _, members = _bindings(tree, "torch.utils.data", frozenset({"DataLoader"}))
    names = {"DataLoader", *members}
    found = []
    for node, scope in _calls(tree):
        func = node.func
        if (isinstance(func, ast.Name) and func.id in names) or (
            isinstance(func, ast.Attribute) and func.attr == "DataLoader"
        ):
            found.append(Call(path, node.lineno, scope, _dotted(func) or "?", ast.unparse(node)))
    return found


def _modules(*packages: str) -> Iterator[tuple[str, str]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def _factory_calls() -> list[Call]:
    return [
        call for path, source in _modules(*PACKAGES) for call in factory_calls_without_device(source, path)
    ]


def _training_dataloaders() -> list[Call]:
    return [
        call
        for path, source in _modules("training")
        if not path.startswith(DATALOADER_HOMES)
        for call in dataloader_constructions(source, path)
    ]


def _not_allowed(calls: list[Call], allowed: tuple[Allowed, ...]) -> list[Call]:
    return [call for call in calls if not any(call.allowed_by(entry) for entry in allowed)]


def test_tensor_factories_pass_a_device() -> None:
    offenders = _not_allowed(_factory_calls(), ALLOWED_FACTORIES)
    listing = "\n".join(f"  {call}" for call in offenders)
    assert not offenders, (
        f"{len(offenders)} torch tensor factory call(s) without device= (issue 14: every tensor is "
        f"created on the device it is used on; a CPU tensor meeting a CUDA one crashes the trainers):\n"
        f"{listing}\n"
        "Fix: pass device= the device the tensor is used on (an input tensor's .device, a module "
        "parameter's .device, the function's device argument). Write device=\"cpu\" where the tensor is "
        "meant for the CPU: data loading in DataLoader workers, file IO, templates built once on the CPU "
        "and moved by callers, draws from a CPU torch.Generator (torch.randperm(n, generator=g, "
        'device="cpu").to(device): CUDA randperm needs a CUDA generator). torch.*_like and '
        "Tensor.new_* inherit the device and need nothing. A deliberate exception goes on "
        "ALLOWED_FACTORIES in tests/test_tensor_devices.py with its reason."
    )


def test_training_dataloaders_come_from_the_loop() -> None:
    offenders = _not_allowed(_training_dataloaders(), ALLOWED_DATALOADERS)
    listing = "\n".join(f"  {call}" for call in offenders)
    assert not offenders, (
        f"{len(offenders)} DataLoader(s) constructed in training/ outside {', '.join(DATALOADER_HOMES)}:\n"
        f"{listing}\n"
        "Fix: evaluation loaders come from the loop, which moves every batch to the device: "
        "training.batches.device_loader(dataset, device, batch_size, ...) (or the loop's eval_loader). "
        "A loader whose batches are moved explicitly right after (move_to_device) may go on "
        "ALLOWED_DATALOADERS in tests/test_tensor_devices.py with its reason."
    )


@pytest.mark.parametrize(
    ("allowed", "calls"),
    [(ALLOWED_FACTORIES, _factory_calls), (ALLOWED_DATALOADERS, _training_dataloaders)],
    ids=["factories", "dataloaders"],
)
def test_allow_lists_have_no_stale_entries(allowed: tuple[Allowed, ...], calls: object) -> None:
    assert callable(calls)
    found = calls()
    stale = [entry for entry in allowed if not any(call.allowed_by(entry) for call in found)]
    assert not stale, f"allow-list entries that match no call any more; remove them: {stale}"


# -- the checkers themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.zeros(3)",
        "import torch\ntorch.as_tensor(x, dtype=torch.float32)",
        "import torch\ntorch.randperm(n, generator=g)",
        "import torch as th\nth.ones(2, 2)",
        "from torch import zeros\nzeros(3)",
        "from torch import arange as count\ncount(5)",
        "import torch\ndef f(**options):\n    return torch.full((2,), 1.0, **options)",
    ],
)
def test_checker_flags_factories_without_device(source: str) -> None:
    assert len(factory_calls_without_device(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.zeros(3, device=d)",
        "import torch\ntorch.as_tensor(x, dtype=torch.float32, device=x.device)",
        "import torch\ntorch.randperm(n, generator=g, device='cpu')",
        "import torch as th\nth.eye(3, device=d)",
        "import torch\ntorch.zeros_like(x)\nx.new_zeros(3)\nx.new_tensor([1.0])",
        "import torch\ntorch.from_numpy(a)\ntorch.cat([a, b])",
        "import numpy as np\nnp.zeros(3)\nnp.arange(4)",
        "from torch import Tensor\nTensor",
    ],
)
def test_checker_passes_calls_with_a_device_or_that_inherit_one(source: str) -> None:
    assert factory_calls_without_device(source) == []


def test_checker_names_file_line_scope_and_call() -> None:
    source = "import torch\n\nclass A:\n    def f(self):\n        return torch.tensor([1.0])\n"
    (call,) = factory_calls_without_device(source, "pkg/a.py")
    assert (call.path, call.line, call.scope, call.call) == ("pkg/a.py", 5, "A.f", "torch.tensor")
    assert str(call).startswith("pkg/a.py:5: torch.tensor([1.0])")
    assert call.allowed_by(Allowed("pkg/a.py", "A.f", "torch.tensor", "a reason"))
    assert not call.allowed_by(Allowed("pkg/a.py", "A.g", "torch.tensor", "a reason"))


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("from torch.utils.data import DataLoader\nDataLoader(d, batch_size=2)", 1),
        ("from torch.utils.data import DataLoader as Loader\nLoader(d)", 1),
        ("import torch\ntorch.utils.data.DataLoader(d)", 1),
        ("from training.batches import device_loader\ndevice_loader(d, device, 4)", 0),
    ],
)
def test_dataloader_checker(source: str, count: int) -> None:
    assert len(dataloader_constructions(source)) == count
