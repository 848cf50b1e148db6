"""What the network-based metrics share: the device they run on, frames as tensors, and a small cache of per-frame
results (landmarks, identity embeddings) so that AKD, sigma_AKD and landmark jitter detect each frame once."""
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
import torch


def metric_device(device: str | None) -> torch.device:
    """The option's ``device``, or CUDA when there is one, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def bgr_to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """(H, W, 3) BGR uint8 frames -> (n, 3, H, W) RGB float32 in [-1, 1]."""
    batch = np.stack(frames)[..., ::-1].astype(np.float32) / 127.5 - 1
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).contiguous().to(device)


class FrameResultCache:
    """The last ``capacity`` results computed for frames, keyed by (``key``, the frame's bytes)."""

    MISSING = object()

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
        self.entries: OrderedDict = OrderedDict()

    @staticmethod
    def entry(key: Hashable, frame: np.ndarray) -> tuple:
        return key, frame.shape, hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest()

    def lookup(self, key: Hashable, frame: np.ndarray):
        """The stored result, or :attr:`MISSING`."""
        entry = self.entry(key, frame)
        if entry not in self.entries:
            return self.MISSING
        self.entries.move_to_end(entry)
        return self.entries[entry]

    def store(self, key: Hashable, frame: np.ndarray, result):
        self.entries[self.entry(key, frame)] = result
        if len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return result

    def get(self, key: Hashable, frame: np.ndarray, compute: Callable[[np.ndarray], object]):
        """The stored result, else ``compute(frame)`` stored."""
        result = self.lookup(key, frame)
        return self.store(key, frame, compute(frame)) if result is self.MISSING else result
