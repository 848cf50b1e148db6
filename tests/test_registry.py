"""Importing the plugin packages registers every vfsr name exactly once, next to BasicSR's own names."""
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

EXPECTED = {
    'arch': ['BicubicUpsampler', 'CodeFormer', 'Discriminator3D', 'EDVRx8', 'GMFlow', 'KEEP', 'VQAutoEncoder',
             'VQGANDiscriminator', 'VidFace'],
    'dataset': ['TUFS145KDataset', 'TUFS145KTestDataset', 'VFHQClipDataset', 'VFHQImageDataset',
                'VideoClipTestDataset'],
    'model': ['KEEPGANModel', 'KEEPModel', 'VQGANModel', 'VidFaceModel', 'VideoRestorationModel'],
    'loss': ['LPIPSLoss', 'LandmarkSmoothL1Loss'],
    'metric': ['calculate_akd', 'calculate_ids', 'calculate_landmark_jitter', 'calculate_lpips', 'calculate_sigma_akd',
               'calculate_sigma_ids', 'calculate_warping_error'],
}

# A fresh interpreter: the plugin first (as train.py does), then all of BasicSR's own registering packages (a name
# registered twice raises there), then the plugin again (a no-op: each module registers once).
PROBE = """
import vfsr_arch, vfsr_data, vfsr_models, vfsr_eval
import basicsr.archs, basicsr.data, basicsr.losses, basicsr.metrics, basicsr.models
import importlib, vfsr_arch, vfsr_data, vfsr_models, vfsr_eval
from basicsr.utils import registry
for name in ('ARCH', 'DATASET', 'MODEL', 'LOSS', 'METRIC'):
    table = getattr(registry, name + '_REGISTRY')
    own = sorted(key for key, cls in table._obj_map.items() if cls.__module__.split('.')[0].startswith('vfsr'))
    print(table._name, ','.join(own))
"""


def test_plugin_registers_its_names_beside_basicsr():
    result = subprocess.run([sys.executable, '-c', PROBE], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    registered = dict(line.split(' ', 1) for line in result.stdout.strip().splitlines())
    assert {name: names.split(',') for name, names in registered.items()} == EXPECTED


def test_console_scripts_are_installed_and_check_options(tmp_path):
    for script in ('vfsr-train', 'vfsr-test'):
        path = Path(sys.executable).parent / script  # installed by `pip install -e .` beside this interpreter
        result = subprocess.run([str(path), '-opt', 'missing.yml'], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.strip() == f"{script}: error: --opt: option file 'missing.yml' does not exist"
