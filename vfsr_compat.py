"""Every workaround vfsr needs to run stock PyPI ``basicsr`` 1.4.2 and ``facexlib`` 0.3.0 on today's stack.

Import this module before ``basicsr`` (the vfsr packages do so first thing). Each fix is one small function, applied
once at import (:func:`apply_all`), and each has a test in ``tests/test_compat.py`` that fails if the workaround stops
working. We never vendor or fork basicsr: every fix replaces one function or wraps one method.

| problem in the stock package                                   | fix                                  |
|----------------------------------------------------------------|--------------------------------------|
| basicsr imports ``torchvision.transforms.functional_tensor``   | :func:`alias_functional_tensor`      |
| video validation creates metric tensors on ``'cuda'``          | :func:`metric_results_on_model_device` |
| NCCL-only ``init_dist`` and ``torch.cuda.set_device`` on CPU   | :func:`gloo_on_cpu`                  |
| DDP wrapping passes a CUDA ``device_ids`` on CPU               | :func:`gloo_on_cpu`                  |
| resume loads states onto ``cuda`` (and is not weights-only safe) | :func:`resume_on_any_device`       |
| ``load_network`` unpickles and lets PyTorch's raw errors through | :func:`checked_network_loading`      |
| ``torch.distributed.launch`` passes ``--local-rank``           | :func:`accept_local_rank_dash`       |
| ``--force_yml manual_seed=N`` is applied after seeding (ignored) | :func:`seed_after_force_yml`        |
| a kill during ``torch.save`` leaves a truncated checkpoint     | :func:`atomic_checkpoints`           |
| facexlib awing uses ``np.float`` (removed in numpy 1.24)        | :func:`facexlib_without_np_float`    |
| ``flow_warp`` calls ``torch.meshgrid`` without ``indexing``    | :func:`flow_warp_meshgrid_indexing`  |
| facexlib arcface init calls ``.to('cuda')``; facexlib downloads | :func:`facexlib_offline_any_device`  |
| BasicVSR++ builds its deformable alignment only with CUDA       | :func:`basicvsrpp_alignment_on_cpu`  |
| BasicVSR++ on a long clip moves features with ``.cuda()``       | :func:`basicvsrpp_cpu_cache_only_on_cuda` |
"""
import functools
import importlib.util
import inspect
import os
import sys
import tempfile
import types
import warnings
import zipfile
from collections import Counter

import numpy as np
import torch
import torchvision.transforms.functional


def alias_functional_tensor():
    """basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17."""
    if importlib.util.find_spec('torchvision.transforms.functional_tensor') is None:
        sys.modules['torchvision.transforms.functional_tensor'] = torchvision.transforms.functional


def metric_results_on_model_device():
    """Video validation in basicsr allocates ``self.metric_results`` with ``device='cuda'``.

    It only allocates them when the attribute is missing, so we create them first on the model's own device.
    """
    from basicsr.models.video_base_model import VideoBaseModel
    from basicsr.models.video_recurrent_model import VideoRecurrentModel

    def on_model_device(dist_validation):
        @functools.wraps(dist_validation)
        def wrapper(self, dataloader, current_iter, tb_logger, save_img):
            metrics = self.opt['val'].get('metrics')
            if metrics and not hasattr(self, 'metric_results'):
                frames_per_folder = Counter(dataloader.dataset.data_info['folder'])
                self.metric_results = {
                    folder: torch.zeros(num_frames, len(metrics), dtype=torch.float32, device=self.device)
                    for folder, num_frames in frames_per_folder.items()
                }
            return dist_validation(self, dataloader, current_iter, tb_logger, save_img)

        return wrapper

    for model_class in (VideoBaseModel, VideoRecurrentModel):
        model_class.dist_validation = on_model_device(model_class.dist_validation)


def gloo_on_cpu():
    """Distributed training with NCCL on GPUs and gloo on CPU; DDP without CUDA ``device_ids`` on CPU."""
    import torch.distributed as dist
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util, options

    def init_dist(launcher, backend=None, **kwargs):
        if launcher not in ('pytorch', 'slurm'):
            raise ValueError(f'Invalid launcher type: {launcher!r} (use pytorch or slurm)')
        if launcher == 'slurm':
            port = kwargs.pop('port', None)
            slurm_to_torch_env(port)
        backend = backend or ('nccl' if torch.cuda.is_available() else 'gloo')
        if backend == 'nccl':
            torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
        dist.init_process_group(backend=backend, **kwargs)

    def slurm_to_torch_env(port):
        import subprocess

        proc_id, ntasks = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', 29500))
        os.environ['WORLD_SIZE'] = str(ntasks)
        os.environ['RANK'] = str(proc_id)
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', str(proc_id % max(torch.cuda.device_count(), 1)))

    original_model_to_device = BaseModel.model_to_device

    def model_to_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            from torch.nn.parallel import DistributedDataParallel

            find_unused_parameters = self.opt.get('find_unused_parameters', False)
            return DistributedDataParallel(net.to(self.device), find_unused_parameters=find_unused_parameters)
        return original_model_to_device(self, net)

    dist_util.init_dist = init_dist
    options.init_dist = init_dist
    BaseModel.model_to_device = model_to_device


def resume_on_any_device():
    """basicsr loads resume states with ``storage.cuda(...)`` and the full unpickler; load them onto the CPU (the
    model moves them) with ``weights_only=True`` through :mod:`vfsr_io.checkpoint`. A training state holds only
    numbers, tensors and plain containers (optimizer and scheduler state dicts, ``iter``, ``epoch``).
    """
    import basicsr.train
    from basicsr.utils import check_resume, scandir

    def load_resume_state(opt):
        resume_state_path = opt['path'].get('resume_state')
        if opt['auto_resume']:
            state_dir = opt['path']['training_states']
            saved_iters = [int(name.removesuffix('.state')) for name in scandir(state_dir, suffix='.state')
                           if name.removesuffix('.state').isdigit()] if os.path.isdir(state_dir) else []
            if saved_iters:
                resume_state_path = os.path.join(state_dir, f'{max(saved_iters)}.state')
                opt['path']['resume_state'] = resume_state_path
        if not resume_state_path:
            return None
        if not os.path.isfile(resume_state_path):
            raise FileNotFoundError(f'path.resume_state: no training state at {resume_state_path}')
        from vfsr_io.checkpoint import read_checkpoint

        resume_state = read_checkpoint(resume_state_path, 'path.resume_state')
        check_resume(opt, resume_state['iter'])
        return resume_state

    basicsr.train.load_resume_state = load_resume_state


def checked_network_loading():
    """basicsr's ``load_network`` (``path.pretrain_network_*``, and the networks of a resumed run) lets PyTorch's
    raw errors through; it loads through :mod:`vfsr_io.checkpoint` instead: weights only, one-line errors."""
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import get_root_logger

    def load_network(self, net, load_path, strict=True, param_key='params'):
        from vfsr_io.checkpoint import load_network_weights

        net = self.get_bare_model(net)
        option = next((f'path.{key}' for key, value in self.opt['path'].items()
                       if key.startswith('pretrain_network') and value == load_path), None)
        get_root_logger().info(f'Loading {type(net).__name__} model from {load_path}, with param key: [{param_key}].')
        wrapper_keys = (param_key, 'params') if param_key is not None else ()
        load_network_weights(net, load_path, wrapper_keys=wrapper_keys, what=option, strict=strict)

    BaseModel.load_network = load_network


def accept_local_rank_dash():
    """``python -m torch.distributed.launch`` passes ``--local-rank=N``; basicsr's parser knows ``--local_rank``."""
    import basicsr.test
    import basicsr.train
    from basicsr.utils import options

    original_parse_options = options.parse_options

    @functools.wraps(original_parse_options)
    def parse_options(root_path, is_train=True):
        sys.argv = [arg.replace('--local-rank', '--local_rank', 1) if arg.startswith('--local-rank') else arg
                    for arg in sys.argv]
        return original_parse_options(root_path, is_train=is_train)

    for module in (options, basicsr.train, basicsr.test):
        module.parse_options = parse_options


def seed_after_force_yml():
    """basicsr's ``parse_options`` seeds the RNGs before it applies ``--force_yml``, so ``--force_yml manual_seed=N``
    changed the logged seed but not the run. Seeding again with the final ``manual_seed`` fixes that; when the seed
    was not forced it restores exactly the state basicsr left (applying overrides draws no random numbers).
    """
    import basicsr.test
    import basicsr.train
    from basicsr.utils import options, set_random_seed

    parse_options_seeded_too_early = options.parse_options

    @functools.wraps(parse_options_seeded_too_early)
    def parse_options(root_path, is_train=True):
        opt, args = parse_options_seeded_too_early(root_path, is_train=is_train)
        set_random_seed(opt['manual_seed'] + opt['rank'])
        return opt, args

    for module in (options, basicsr.train, basicsr.test):
        module.parse_options = parse_options


def atomic_checkpoints():
    """basicsr writes ``net_g_N.pth`` and ``N.state`` in place, so a kill mid-write leaves a file that breaks
    ``--auto_resume``. Each save now goes to a hidden folder beside the target and is moved in with ``os.replace``
    once it is complete; a save that basicsr failed to write raises instead of being silently skipped.
    """
    from basicsr.models.base_model import BaseModel

    def write_then_move(save_method, folder_key):
        @functools.wraps(save_method)
        def wrapper(self, *args, **kwargs):
            final_dir = self.opt['path'][folder_key]
            os.makedirs(final_dir, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=final_dir, prefix='.writing-') as writing_dir:
                self.opt['path'][folder_key] = writing_dir
                try:
                    save_method(self, *args, **kwargs)
                finally:
                    self.opt['path'][folder_key] = final_dir
                for name in os.listdir(writing_dir):
                    # basicsr logs and ignores a failed torch.save; a file that is not a whole zip archive is not
                    # a checkpoint, and pretending otherwise would break the next --auto_resume.
                    if not zipfile.is_zipfile(os.path.join(writing_dir, name)):
                        raise OSError(f'could not write {os.path.join(final_dir, name)} (see the warnings above)')
                    os.replace(os.path.join(writing_dir, name), os.path.join(final_dir, name))

        return wrapper

    BaseModel.save_network = write_then_move(BaseModel.save_network, 'models')
    BaseModel.save_training_state = write_then_move(BaseModel.save_training_state, 'training_states')


def facexlib_without_np_float():
    """facexlib's awing landmark decoder casts with ``np.float``, which numpy >= 1.24 removed."""
    if importlib.util.find_spec('facexlib') is None:
        return
    from facexlib.alignment import awing_arch

    numpy_with_float = types.ModuleType('numpy_with_float', 'numpy, plus the removed alias np.float = float')
    numpy_with_float.__getattr__ = lambda name: getattr(np, name)
    numpy_with_float.float = float
    awing_arch.np = numpy_with_float


def flow_warp_meshgrid_indexing():
    """basicsr's ``flow_warp`` (GMFlow's refinement, KEEP's warping, basicsr's video networks) calls
    ``torch.meshgrid`` without ``indexing``, a warning on every call. Its module gets a ``torch`` whose ``meshgrid``
    passes ``indexing='ij'``, the grid it builds today, so the results are unchanged."""
    from basicsr.archs import arch_util

    torch_with_ij_meshgrid = types.ModuleType('torch_with_ij_meshgrid', "torch, with meshgrid's indexing='ij'")
    torch_with_ij_meshgrid.__getattr__ = lambda name: getattr(torch, name)
    torch_with_ij_meshgrid.meshgrid = functools.partial(torch.meshgrid, indexing='ij')
    arch_util.torch = torch_with_ij_meshgrid


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file is not where it was expected; nothing is ever downloaded."""


def facexlib_offline_any_device():
    """facexlib downloads weights at run time and builds arcface with ``.to('cuda')``.

    Every facexlib ``init_*_model`` now only reads ``model_rootpath/<file name>`` (default ``weights/facexlib``) and
    raises :class:`MissingWeightsError` naming the file and where to get it; arcface is built on the CPU first.
    """
    if importlib.util.find_spec('facexlib') is None:
        return
    import facexlib.alignment
    import facexlib.assessment
    import facexlib.detection
    import facexlib.headpose
    import facexlib.matting
    import facexlib.parsing
    import facexlib.recognition
    import facexlib.utils
    from facexlib.recognition.arcface_arch import Backbone

    def local_file_only(url, model_dir=None, progress=True, file_name=None, save_dir=None):
        folder = save_dir or os.path.join('weights', 'facexlib')
        path = os.path.join(folder, file_name or os.path.basename(url))
        if not os.path.isfile(path):
            raise MissingWeightsError(
                f'facexlib weights {os.path.basename(path)!r} not found in {folder!r}: download it from {url} '
                'and put it there (vfsr never downloads at run time)')
        return path

    def init_recognition_model(model_name, half=False, device='cuda', model_rootpath=None):
        if model_name != 'arcface':
            raise NotImplementedError(f'{model_name} is not implemented.')
        model = Backbone(num_layers=50, drop_ratio=0.6, mode='ir_se')
        url = 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth'
        path = local_file_only(url, save_dir=model_rootpath)
        from vfsr_io.checkpoint import load_network_weights

        load_network_weights(model, path, wrapper_keys=(), what='facexlib arcface weights')
        return model.eval().to(device)

    for module in (facexlib.utils, facexlib.alignment, facexlib.assessment, facexlib.detection, facexlib.headpose,
                   facexlib.matting, facexlib.parsing, facexlib.recognition):
        module.load_file_from_url = local_file_only
    facexlib.recognition.init_recognition_model = init_recognition_model


def basicvsrpp_alignment_on_cpu():
    """basicsr's ``BasicVSRPlusPlus`` builds its four ``deform_align`` modules only when CUDA is available: on a
    CPU-only machine it warns once and runs without alignment (another network; its checkpoints miss those keys).
    The alignment needs no CUDA: ``SecondOrderDeformableAlignment.forward`` calls ``torchvision.ops.deform_conv2d``,
    which runs on the CPU. So after the stock constructor, a network built without them gets the same four modules
    (same arguments, same names, so checkpoints load either way) and runs with alignment; the warning, now untrue,
    is silenced. Their random initial weights come from the generator after the rest of the network's, so a seed
    initialises them differently than on a GPU (trained or loaded weights are unaffected)."""
    from basicsr.archs import basicvsrpp_arch

    network = basicvsrpp_arch.BasicVSRPlusPlus
    stock_init = network.__init__
    stock_signature = inspect.signature(stock_init)

    @functools.wraps(stock_init)
    def init_with_alignment(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Deformable alignment module is not added')
            stock_init(self, *args, **kwargs)
        if len(self.deform_align) > 0:  # CUDA available: the stock constructor built them
            return
        options = stock_signature.bind(self, *args, **kwargs)
        options.apply_defaults()
        mid_channels = options.arguments['mid_channels']
        for module in ('backward_1', 'forward_1', 'backward_2', 'forward_2'):
            self.deform_align[module] = basicvsrpp_arch.SecondOrderDeformableAlignment(
                2 * mid_channels, mid_channels, 3, padding=1, deformable_groups=16,
                max_residue_magnitude=options.arguments['max_residue_magnitude'])
        self.is_with_alignment = True

    network.__init__ = init_with_alignment


def basicvsrpp_cpu_cache_only_on_cuda():
    """``BasicVSRPlusPlus`` keeps the features of a clip longer than ``cpu_cache_length`` (100) frames in CPU memory
    and moves each back with ``.cuda()``: on a CPU that fails (no CUDA) for a long clip, such as a whole VFHQ-Test
    clip. Off CUDA the cache has nothing to save, so a forward on a tensor that is not on CUDA runs without it (the
    same computation); on CUDA nothing changes."""
    from basicsr.archs import basicvsrpp_arch

    network = basicvsrpp_arch.BasicVSRPlusPlus
    stock_forward = network.forward

    @functools.wraps(stock_forward)
    def forward_caching_only_on_cuda(self, lqs):
        if lqs.is_cuda:
            return stock_forward(self, lqs)
        cache_length, self.cpu_cache_length = self.cpu_cache_length, lqs.size(1)  # the stock test is t > length
        try:
            return stock_forward(self, lqs)
        finally:
            self.cpu_cache_length = cache_length

    network.forward = forward_caching_only_on_cuda


def apply_all():
    alias_functional_tensor()
    metric_results_on_model_device()
    gloo_on_cpu()
    resume_on_any_device()
    checked_network_loading()
    accept_local_rank_dash()
    seed_after_force_yml()
    atomic_checkpoints()
    facexlib_without_np_float()
    flow_warp_meshgrid_indexing()
    facexlib_offline_any_device()
    basicvsrpp_alignment_on_cpu()
    basicvsrpp_cpu_cache_only_on_cuda()


apply_all()
