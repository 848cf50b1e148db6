"""Every wrong checkpoint gets its one true line, through KEEP.load_checkpoint, train.py and test.py; nothing is
ever unpickled; training states save and resume with the weights-only loader."""
import pickle
from pathlib import Path

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import REPO_ROOT, run_python, scratch_repo

import vfsr_arch  # noqa: F401  (registers the archs)
from datasets_prep.make_tiny_vimeo import make_tiny_vimeo
from vfsr_io.checkpoint import CheckpointError, MissingCheckpointError, read_checkpoint

EDVR_OPTIONS = REPO_ROOT / 'tests' / 'options' / 'edvr_tiny_cpu.yml'
TINY_KEEP = dict(img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8], codebook_size=64,
                 emb_dim=32, dim_embd=32, n_head=2, n_layers=2, latent_size=64, cft_list=['16', '32'], cfa_list=[],
                 kalman_attn_head_dim=8, num_uncertainty_layers=1,
                 flownet_kwargs=dict(feature_channels=32, num_transformer_layers=1, ffn_dim_expansion=2))


class TouchOnUnpickle:
    """Unpickling this object creates ``path``: the proof that a loader ran pickled code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (Path(self.path), )


def wrong_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """One file per kind of wrong checkpoint, and the start of the line each must get (after the file name)."""
    folder.mkdir(exist_ok=True)
    marker = folder / 'code_ran'
    files = {
        'text': (folder / 'notes.pth', 'not a PyTorch checkpoint'),
        'plain pickle': (folder / 'plain.pkl', 'not a PyTorch checkpoint (a plain pickle'),
        'truncated': (folder / 'truncated.pth', 'not a PyTorch checkpoint'),
        'pickled code': (folder / 'code.pth', 'contains pickled code or objects ('),
        'pickled code, plain pickle': (folder / 'code.pkl', 'contains pickled code or objects ('),
        'pickled code, legacy torch.save': (folder / 'legacy.pth', 'contains pickled code or objects ('),
        'training state': (folder / '8.state', 'holds no network weights (top-level keys: epoch, iter, optimizers'),
    }
    files['text'][0].write_text('model: KEEP\n')
    files['plain pickle'][0].write_bytes(pickle.dumps({'params': [1.0, 2.0]}))
    torch.save({'params': {'weight': torch.zeros(64, 64)}}, files['truncated'][0])
    files['truncated'][0].write_bytes(files['truncated'][0].read_bytes()[:300])
    torch.save({'params': TouchOnUnpickle(marker)}, files['pickled code'][0])
    files['pickled code, plain pickle'][0].write_bytes(pickle.dumps({'params': TouchOnUnpickle(marker)}))
    torch.save({'params': TouchOnUnpickle(marker)}, files['pickled code, legacy torch.save'][0],
               _use_new_zipfile_serialization=False)
    torch.save({'epoch': 1, 'iter': 8, 'optimizers': [], 'schedulers': []}, files['training state'][0])
    return files


@pytest.fixture(scope='module')
def keep():
    return ARCH_REGISTRY.get('KEEP')(**TINY_KEEP)


@pytest.mark.parametrize('kind', ['text', 'plain pickle', 'truncated', 'pickled code', 'pickled code, plain pickle',
                                  'pickled code, legacy torch.save', 'training state'])
def test_load_checkpoint_names_what_is_wrong_with_the_file(keep, tmp_path, kind):
    path, reason = wrong_files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as error:
        keep.load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"KEEP checkpoint '{path}': {reason}") and '\n' not in message
    assert 'weights_only' not in message
    assert not (tmp_path / 'code_ran').exists(), 'the pickled code ran'


def test_load_checkpoint_tells_another_network_from_another_configuration(keep, tmp_path):
    codeformer = ARCH_REGISTRY.get('CodeFormer')(
        img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8], codebook_size=64, emb_dim=32,
        dim_embd=32, n_head=2, n_layers=2, latent_size=64, connect_list=['16', '32'])
    torch.save({'params_ema': codeformer.state_dict()}, tmp_path / 'codeformer.pth')
    with pytest.raises(CheckpointError, match=r"'.*codeformer.pth': a checkpoint of a different network, not KEEP: "
                                              r"\d+ of its \d+ keys are missing \(flownet\..*\) and \d+ are "
                                              r"unexpected \(fuse_convs_dict\..*\)$"):
        keep.load_checkpoint(tmp_path / 'codeformer.pth')

    torch.save(ARCH_REGISTRY.get('KEEP')(**dict(TINY_KEEP, cft_list=['8', '16', '32'])).state_dict(),
               tmp_path / 'other_cft.pth')
    with pytest.raises(CheckpointError, match=r"a checkpoint of KEEP built with a different configuration: build "
                                              r"the network with cft_list: \['8', '16', '32'\] instead of "
                                              r"\['16', '32'\]$"):
        keep.load_checkpoint(tmp_path / 'other_cft.pth')

    torch.save(ARCH_REGISTRY.get('KEEP')(**dict(TINY_KEEP, codebook_size=128)).state_dict(), tmp_path / 'big.pth')
    with pytest.raises(CheckpointError, match=r"a checkpoint of KEEP built with a different configuration: \d+ "
                                              r"tensors differ in shape, e\.g\. quantize\.embedding\.weight is "
                                              r"\(128, 32\) in the file and \(64, 32\) here"):
        keep.load_checkpoint(tmp_path / 'big.pth')

    with pytest.raises(MissingCheckpointError, match=r"'nowhere.pth': file not found; where to get it: .*jnjaby"):
        keep.load_checkpoint('nowhere.pth')


# --------------------------------------------------------------------------------------- train.py and test.py
@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """A scratch repo root with train.py/test.py, a tiny Vimeo-layout set, the wrong files and wrong networks."""
    root = tmp_path_factory.mktemp('vfsr_checkpoints')
    scratch_repo(root)
    make_tiny_vimeo(root / 'datasets' / 'tiny_vimeo')
    wrong_files(root / 'weights')
    network_opt = yaml.safe_load(EDVR_OPTIONS.read_text())['network_g']
    network_opt.pop('type')
    edvr = ARCH_REGISTRY.get('EDVR')
    torch.save({'params': edvr(**dict(network_opt, num_feat=8)).state_dict()}, root / 'weights' / 'edvr_nf8.pth')
    torch.save({'params': torch.nn.Conv2d(3, 8, 3).state_dict()}, root / 'weights' / 'conv.pth')
    return root


def write_options(workdir, name: str, phase: str, **path) -> str:
    opt = yaml.safe_load(EDVR_OPTIONS.read_text())
    opt['name'] = name
    opt['path'].update(path)
    if phase == 'test':
        opt['datasets'] = {'test': opt['datasets']['val']}
    (workdir / f'{name}.yml').write_text(yaml.safe_dump(opt))
    return f'{name}.yml'


WRONG_PRETRAINED = [
    ('weights/notes.pth', "weights/notes.pth': not a PyTorch checkpoint"),
    ('weights/code.pth', "weights/code.pth': contains pickled code or objects"),
    ('weights/conv.pth', "weights/conv.pth': a checkpoint of a different network, not EDVR: "),
    ('weights/edvr_nf8.pth', "weights/edvr_nf8.pth': a checkpoint of EDVR built with a different configuration: "),
]


@pytest.mark.parametrize('script, option, file, message', [
    *((script, 'pretrain_network_g', file, message) for script in ('train.py', 'test.py')
      for file, message in WRONG_PRETRAINED),
    ('train.py', 'resume_state', 'weights/code.pkl', "weights/code.pkl': contains pickled code or objects"),
])
def test_train_py_and_test_py_give_one_line_exit_2_and_write_nothing(workdir, script, option, file, message):
    name = f'wrong_{script[:-3]}_{Path(file).stem}'
    result = run_python(workdir, script, '-opt', write_options(workdir, name, script[:-3], **{option: file}),
                        check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"{script}: error: path.{option} '{file}") or \
        result.stderr.strip().splitlines()[-1].startswith(f"{script}: error: path.{option} '{workdir}")
    assert message in result.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in result.stderr and 'weights_only' not in result.stderr
    assert not (workdir / 'weights' / 'code_ran').exists()
    assert not (workdir / 'experiments' / name).exists() and not (workdir / 'results' / name).exists()


def test_training_states_save_and_resume_weights_only(workdir):
    """What BasicSR's save_training_state writes (AdamW in Lookahead, a cosine scheduler) loads weights-only."""
    from basicsr.models.base_model import BaseModel
    from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR

    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False,
                       'path': {'training_states': str(workdir / 'states'), 'models': str(workdir / 'states')}})
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = model.get_optimizer('AdamW', [param], 1e-3, lookahead={'alpha': 0.5, 'k': 2})
    other = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], 1e-3)
    model.optimizers = [optimizer, other]
    model.schedulers = [CosineAnnealingRestartLR(optimizer, periods=[10]), MultiStepRestartLR(other, [2, 4])]
    for _ in range(3):
        param.square().sum().backward()
        optimizer.step()
        for scheduler in model.schedulers:
            scheduler.step()
    model.save_training_state(epoch=1, current_iter=3)
    state = read_checkpoint(workdir / 'states' / '3.state', 'training state')
    assert (state['epoch'], state['iter']) == (1, 3)
    model.resume_training(state)
    assert optimizer.fast_steps == 3
