"""Shared test fixtures. ``../shared`` (reference data of the official code) is optional: tests that need it skip."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / 'shared'
TEST_DATA_DIR = REPO_ROOT / 'tests' / 'data'


def default_sigint() -> None:
    """``Popen(preexec_fn=...)`` for a child the test presses Ctrl-C in: a child of a background job starts with
    SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def load_reference(name: str) -> dict:
    """Load ``../shared/reference/<name>`` (a ``*_tiny_A.pt`` dict), skipping the test when it is absent."""
    path = SHARED_DIR / 'reference' / name
    if not path.is_file():
        pytest.skip(f'reference data {path} is not available')
    return torch.load(path, map_location='cpu', weights_only=False)


def assert_matches_reference(ours: torch.Tensor, expected: torch.Tensor, relative: float = 1e-5) -> None:
    """``ours`` equals the official output up to float32 rounding: the largest difference is at most ``relative`` times
    the output's largest magnitude. An absolute bound fails across CPUs: another vector width sums in another order,
    and outputs of random tiny networks reach 1e6."""
    bound = relative * max(expected.abs().max().item(), 1.0)
    difference = (ours - expected).abs().max().item()
    assert difference <= bound, f'largest difference {difference:.3g} > {bound:.3g} ({relative:g} of the output scale)'


def reference_key_list(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """Read a ``*_full_state_dict.txt`` key list (``key<TAB>shape<TAB>dtype``) from ``../shared/reference``."""
    path = SHARED_DIR / 'reference' / name
    if not path.is_file():
        pytest.skip(f'reference key list {path} is not available')
    return read_key_list(path)


def read_key_list(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """Parse a key list file: ``#`` lines are comments, others are ``key<TAB>(shape)<TAB>dtype``."""
    entries = []
    for line in Path(path).read_text().splitlines():
        if not line or line.startswith('#'):
            continue
        key, shape = line.split('\t')[:2]
        entries.append((key, tuple(int(dim) for dim in shape.strip('()').split(',') if dim.strip())))
    return entries


def state_dict_key_list(state_dict: dict) -> list[tuple[str, tuple[int, ...]]]:
    """The same format as :func:`read_key_list`, from a live state_dict."""
    return [(key, tuple(value.shape)) for key, value in state_dict.items()]


def randomize_like_reference(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every tensor of ``model`` random values by the reference data's rule, so that no zero-initialised layer
    (CFT, CFA, ...) hides a path: matrices N(0, 1/fan_in); 1-D weights 1 + 0.1 N; other 1-D tensors 0.1 N."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator)
            if tensor.ndim >= 2:
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.1 * noise + key.endswith('weight'))
    return model


def with_realistic_code_margins(model: torch.nn.Module) -> torch.nn.Module:
    """Scale the code head (``idx_pred_layer.1.weight``) of a randomised KEEP/CodeFormer by 20, the reference data's
    rule: logits then have top-1/top-2 gaps like trained weights, so code choices do not hinge on float noise."""
    with torch.no_grad():
        model.idx_pred_layer[1].weight.mul_(20)
    return model


def scratch_repo(root: Path, scripts=('train.py', 'test.py')) -> Path:
    """``root`` as a scratch repository root: this checkout's entry scripts copied in (the code itself is found
    through :func:`run_python`'s PYTHONPATH), so runs write their experiments/ and results/ there."""
    for script in scripts:
        shutil.copy(REPO_ROOT / script, root / script)
    return root


def run_python(workdir, *args, check: bool = True, **env_vars) -> subprocess.CompletedProcess:
    """Run ``python *args`` in ``workdir`` against this checkout's code (one thread each, so parallel processes
    share the cores); with ``check``, a non-zero exit fails the test showing the end of the output."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1', **env_vars)
    result = subprocess.run([sys.executable, *args], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f'{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result


def python_log(workdir, *args, **env_vars) -> str:
    """:func:`run_python` that must succeed; its stdout and stderr (the training log) together."""
    result = run_python(workdir, *args, **env_vars)
    return result.stdout + result.stderr


@pytest.fixture
def broken_compiler():
    """Inductor pointed at a C++ compiler that does not exist, as on a machine without one."""
    import torch._dynamo
    import torch._inductor.config as inductor_config
    torch._dynamo.reset()  # forget a probe compiled by an earlier test
    with inductor_config.patch({'cpp.cxx': ('/nonexistent/c++',)}):
        yield
