"""Face restorers: aligned face crops of one track in, restored crops out (possibly later, in order).

Each restorer says how to crop a face (:meth:`FaceRestorer.crop_matrix`, frame -> crop pixels, and ``crop_size``)
and restores crops pushed per track with :meth:`FaceRestorer.push`; results come back as ``(key, image)`` pairs,
maybe several frames later (KEEP restores whole chunks, VidFace needs 3 frames after the centre one).
:meth:`FaceRestorer.end_track` returns what is still pending for a track. :meth:`FaceRestorer.state_dict` /
:meth:`FaceRestorer.load_state_dict` save and restore what a restorer holds between pushes (tensors and plain
values, for a weights-only file), so that a resumed run continues exactly where it stopped.

- ``keep`` / ``keep-asian``: KEEP per track on 512x512 FFHQ-aligned crops. By default the Kalman recursion runs
  through the whole track (the previous output is carried into each new chunk, so there is no seam every
  ``max_length`` frames); ``keep_restart=True`` restarts every chunk as the official script does.
- ``codeformer``: CodeFormer per frame on 512x512 crops, fidelity weight ``w``.
- ``vidface``: VidFace per track on tiny crops (the network's LR size) framed as its training snapshots; the
  centre of a sliding window of 7 snapshots is restored 8x.
- ``identity``: returns the crop (for checks of the geometry and for tests).

Networks are built from BasicSR option dicts (``network_g``) through ``ARCH_REGISTRY``, so an option file of
training builds the same network; :data:`OFFICIAL_MODELS` has the released configurations. Weights are read with
``weights_only=True`` through :func:`vfsr_io.checkpoint.load_network_weights`.
"""
from collections import defaultdict, deque
from dataclasses import replace
from pathlib import Path

import vfsr_compat  # noqa: F401  (before basicsr)

import numpy as np
import torch
from basicsr.utils.registry import ARCH_REGISTRY

import vfsr_arch  # noqa: F401  (registers the networks)
from vfsr_arch.acceleration import AUTOCAST_DTYPES, autocast_context, compile_network, keep_freed_memory
from vfsr_arch.keep_arch import KEEP_RELEASES
from vfsr_arch.vqgan_arch import CODEFORMER_RELEASES
from vfsr_data.face_landmarks import downscale_points
from vfsr_face.astronaut import ASTRONAUT_FACE_CENTRE, ASTRONAUT_FACE_WIDTH, ASTRONAUT_LANDMARKS
from vfsr_io.checkpoint import load_network_weights
from vfsr_restore.compositing import crop_matrix

VIDFACE_RELEASES = 'Baidu Pan, linked from https://github.com/yuangan/VidFace (net_g_600000.pth)'
# --model name -> network_g options, weights file under --weights-dir, where it is published.
OFFICIAL_MODELS = {
    'keep': ({'type': 'KEEP', 'cft_list': ['16', '32', '64'], 'kalman_attn_head_dim': 48,
              'num_uncertainty_layers': 3, 'cfa_list': ['16', '32'], 'cfa_nhead': 4, 'cfa_dim': 256},
             'KEEP/KEEP-b76feb75.pth', KEEP_RELEASES),
    'keep-asian': ({'type': 'KEEP', 'cft_list': ['32', '64', '128', '256'], 'kalman_attn_head_dim': 48,
                    'num_uncertainty_layers': 3, 'cfa_list': ['16', '32'], 'cfa_nhead': 4, 'cfa_dim': 256},
                   'KEEP/KEEP_Asian-4765ebe0.pth', KEEP_RELEASES),
    'codeformer': ({'type': 'CodeFormer', 'dim_embd': 512, 'n_head': 8, 'n_layers': 9, 'codebook_size': 1024,
                    'connect_list': ['32', '64', '128', '256']}, 'CodeFormer/codeformer.pth', CODEFORMER_RELEASES),
    'vidface': ({'type': 'VidFace'}, 'vidface/net_g_600000.pth', VIDFACE_RELEASES),
}


def to_tensor(crop: np.ndarray, device: torch.device) -> torch.Tensor:
    """RGB uint8 (h, w, 3) -> (1, 3, h, w) float in [-1, 1]."""
    return torch.from_numpy(crop).to(device).permute(2, 0, 1)[None].float().div(127.5).sub(1)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """(3, h, w) in about [-1, 1] -> RGB uint8 (h, w, 3)."""
    return tensor.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class FaceRestorer:
    """Base: FFHQ-aligned square crops of ``size``; subclasses restore them."""
    output_scale = 1

    def __init__(self, size: int = 512, device='cpu', precision: str = 'fp32'):
        self.crop_size = (size, size)
        self.device = torch.device(device)
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f'--precision {precision!r}: choose {", ".join(AUTOCAST_DTYPES)}')
        self.precision = precision

    def crop_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        return crop_matrix(landmarks, self.crop_size)

    def push(self, track_id: int, key, crop: np.ndarray) -> list[tuple[object, np.ndarray]]:
        raise NotImplementedError

    def end_track(self, track_id: int) -> list[tuple[object, np.ndarray]]:
        return []

    def state_dict(self) -> dict:
        """What the restorer holds between pushes: tensors (on the CPU) and plain values only."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (restored frames come out as if the run had never stopped)."""

    def autocast(self):
        return autocast_context(self.precision, self.device.type)


class IdentityRestorer(FaceRestorer):
    def push(self, track_id, key, crop):
        return [(key, crop)]


class CodeFormerRestorer(FaceRestorer):
    def __init__(self, net, fidelity: float = 0.5, **kwargs):
        super().__init__(net.img_size, **kwargs)
        self.net, self.fidelity = net, fidelity

    @torch.no_grad()
    def push(self, track_id, key, crop):
        with self.autocast():
            output = self.net(to_tensor(crop, self.device), w=self.fidelity)[0]
        return [(key, to_image(output[0]))]


class KEEPRestorer(FaceRestorer):
    """KEEP per track. ``max_length`` frames are restored together (the gain network sees a whole chunk);
    ``restart`` makes each chunk restart the recursion (official), else it carries on across chunks.

    The crops of each track's unfinished chunk are kept with the frame before it (``chunk_inputs``): saving them
    instead of the chunk's measurements (encoder features up to the crop's resolution, tens of MB per frame) keeps
    :meth:`state_dict` small; loading measures them again, which gives the same numbers."""

    def __init__(self, net, max_length: int = 20, restart: bool = False, **kwargs):
        super().__init__(net.img_size, **kwargs)
        self.net, self.max_length, self.restart = net, max_length, restart
        self.states: dict[int, object] = {}
        self.keys: dict[int, deque] = defaultdict(deque)
        self.chunk_inputs: dict[int, tuple[torch.Tensor | None, list[np.ndarray]]] = {}

    @torch.no_grad()
    def push(self, track_id, key, crop):
        state = self.states.get(track_id) or self.net.init_state(self.max_length, carry=not self.restart)
        if not state.measurements:
            self.chunk_inputs[track_id] = (state.previous_frame, [])
        self.chunk_inputs[track_id][1].append(crop)
        self.keys[track_id].append(key)
        with self.autocast():
            outputs, self.states[track_id] = self.net.step(to_tensor(crop, self.device), state)
        return self._pair(track_id, outputs)

    def state_dict(self):
        tracks = {}
        for track_id, state in self.states.items():
            previous_frame, crops = self.chunk_inputs.get(track_id, (state.previous_frame, []))
            tracks[track_id] = {
                'keys': list(self.keys[track_id]), 'crops': [torch.from_numpy(crop) for crop in crops],
                'chunk_previous_frame': cpu_or_none(previous_frame),
                'previous_output': cpu_or_none(state.previous_output),
                'cfa_memory': {size: memory.cpu() for size, memory in state.cfa_memory.items()}}
        return {'tracks': tracks}

    @torch.no_grad()
    def load_state_dict(self, state):
        self.states, self.keys, self.chunk_inputs = {}, defaultdict(deque), {}
        for track_id, saved in state['tracks'].items():
            self.states[track_id] = replace(
                self.net.init_state(self.max_length, carry=not self.restart),
                previous_frame=device_or_none(saved['chunk_previous_frame'], self.device),
                previous_output=device_or_none(saved['previous_output'], self.device),
                cfa_memory={size: memory.to(self.device) for size, memory in saved['cfa_memory'].items()})
            self.chunk_inputs[track_id] = (self.states[track_id].previous_frame, [])
            for crop in saved['crops']:  # measured again: the chunk is unfinished, nothing comes out
                self.chunk_inputs[track_id][1].append(crop.numpy())
                with self.autocast():
                    _, self.states[track_id] = self.net.step(to_tensor(crop.numpy(), self.device),
                                                             self.states[track_id])
            self.keys[track_id] = deque(tuple(key) if isinstance(key, list) else key for key in saved['keys'])

    @torch.no_grad()
    def end_track(self, track_id):
        state = self.states.pop(track_id, None)
        if state is None:
            return []
        with self.autocast():
            outputs, _ = self.net.flush(state)
        pairs = self._pair(track_id, outputs)
        self.keys.pop(track_id, None)
        self.chunk_inputs.pop(track_id, None)
        return pairs

    def _pair(self, track_id, outputs: torch.Tensor):
        """Match the restored frames (b=1, k, 3, H, W; k may be 0) with the oldest waiting keys of the track."""
        frames = outputs[0] if outputs.shape[0] else []
        return [(self.keys[track_id].popleft(), to_image(frame)) for frame in frames]


class VidFaceRestorer(FaceRestorer):
    """VidFace per track: a window of ``num_frames`` (7) LR snapshots (edge snapshots repeated at the track's
    ends) gives the 8x restored centre snapshot. The crop frames the face as the demo's TUFs-style snapshots
    (face width 96/135 of the GT width, centred)."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        if net.num_frames % 2 == 0:
            raise ValueError(f'VidFace num_frames must be odd to have a centre snapshot, got {net.num_frames}')
        self.window_size = net.num_frames
        height, width = net.lr_size
        self.crop_size = (width, height)
        self.output_scale = net.scale
        gt_width, gt_height = width * net.scale, height * net.scale
        scale = gt_width / ASTRONAUT_FACE_WIDTH
        template_gt = (ASTRONAUT_LANDMARKS - np.array(ASTRONAUT_FACE_CENTRE)) * scale + [(gt_width - 1) / 2,
                                                                                          (gt_height - 1) / 2]
        self.template = downscale_points(template_gt, 1 / net.scale)
        self.windows: dict[int, deque] = {}

    def crop_matrix(self, landmarks):
        return crop_matrix(landmarks, self.crop_size, self.template)

    def push(self, track_id, key, crop):
        window = self.windows.setdefault(track_id, deque())
        if not window:  # repeat the first snapshot before the track's start
            window.extend([(None, crop)] * (self.window_size // 2))
        window.append((key, crop))
        if len(window) < self.window_size:
            return []
        result = self._restore_centre(window)
        window.popleft()
        return [result]

    def state_dict(self):
        return {'windows': {track_id: [(key, torch.from_numpy(crop)) for key, crop in window]
                            for track_id, window in self.windows.items()}}

    def load_state_dict(self, state):
        self.windows = {track_id: deque((key, crop.numpy()) for key, crop in window)
                        for track_id, window in state['windows'].items()}

    def end_track(self, track_id):
        window = self.windows.pop(track_id, None)
        results = []
        if not window:
            return results
        last = window[-1][1]
        centre = self.window_size // 2
        while any(key is not None for key, _ in list(window)[centre:]):
            while len(window) < self.window_size:
                window.append((None, last))
            results.append(self._restore_centre(window))
            window.popleft()
            window.append((None, last))
        return results

    @torch.no_grad()
    def _restore_centre(self, window) -> tuple[object, np.ndarray]:
        snapshots = torch.cat([to_tensor(crop, self.device) for _, crop in window])[None]
        with self.autocast():
            output, _ = self.net(snapshots)
        return window[self.window_size // 2][0], to_image(output[0, self.window_size // 2])


def cpu_or_none(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.cpu()


def device_or_none(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def build_network(network_opt: dict, weights: str | Path | None, published_at: str | None, device) -> torch.nn.Module:
    """Build ``network_opt`` (a ``network_g`` dict) through BasicSR's registry, load ``weights`` (strict,
    weights-only; None leaves the initialisation, for tests with random networks), eval mode on ``device``."""
    options = dict(network_opt)
    network_type = options.pop('type', None)
    if network_type not in ('KEEP', 'CodeFormer', 'VidFace'):
        raise ValueError(f'network_g.type {network_type!r}: vfsr-restore runs KEEP, CodeFormer or VidFace')
    try:
        net = ARCH_REGISTRY.get(network_type)(**options)
    except TypeError as error:
        raise ValueError(f'network_g: {error}') from None
    if weights is not None:
        what = f'{network_type} weights'
        if network_type == 'KEEP':
            wrapper_keys = ('params_ema', 'params', 'model')
        else:
            wrapper_keys = ('params_ema', 'params')
        load_network_weights(net, weights, wrapper_keys=wrapper_keys, published_at=published_at, what=what)
    net = net.eval().to(device)
    if network_type in ('KEEP', 'CodeFormer'):  # convolution networks: channels_last is faster (benchmarks/)
        net = net.to(memory_format=torch.channels_last)
    if torch.device(device).type == 'cpu':  # reuse activation buffers instead of page-faulting new ones (~20%)
        keep_freed_memory()
    return net


def restorer_weights(model: str, weights: str | Path | None = None,
                     weights_dir: str | Path = 'weights') -> tuple[Path | None, str | None]:
    """The weights file ``model`` reads (``weights``, else its official file under ``weights_dir``) and where it is
    published; (None, None) for the identity model."""
    if model not in OFFICIAL_MODELS:
        return (None if weights is None else Path(weights)), None
    _, official_file, published_at = OFFICIAL_MODELS[model]
    if weights is None:
        return Path(weights_dir) / official_file, published_at
    # a file of another name is the user's own (e.g. one they trained): its origin is not the official release
    return Path(weights), published_at if Path(weights).name == Path(official_file).name else None


def build_restorer(model: str = 'keep', network_opt: dict | None = None, weights: str | Path | None = None,
                   weights_dir: str | Path = 'weights', device='cpu', precision: str = 'fp32',
                   fidelity: float = 0.5, max_length: int = 20, keep_restart: bool = False,
                   random_weights: bool = False, compile: bool = False) -> FaceRestorer:
    """The restorer for ``model`` (``keep``, ``keep-asian``, ``codeformer``, ``vidface``, ``identity``), its network
    from ``network_opt`` (default: the official configuration) with ``weights`` (default: the official file under
    ``weights_dir``). ``random_weights`` skips loading (tests); ``compile`` compiles the network's submodules."""
    device = torch.device(device)
    if model == 'identity':
        return IdentityRestorer(device=device, precision=precision)
    if model not in OFFICIAL_MODELS:
        raise ValueError(f'--model {model!r}: choose from {", ".join([*OFFICIAL_MODELS, "identity"])}')
    network_opt = network_opt or OFFICIAL_MODELS[model][0]
    weights, published_at = (None, None) if random_weights else restorer_weights(model, weights, weights_dir)
    net = compile_network(build_network(network_opt, weights, published_at, device), compile)
    kwargs = {'device': device, 'precision': precision}
    network_type = network_opt['type']
    if network_type == 'KEEP':
        return KEEPRestorer(net, max_length, keep_restart, **kwargs)
    if network_type == 'CodeFormer':
        return CodeFormerRestorer(net, fidelity, **kwargs)
    return VidFaceRestorer(net, **kwargs)
