"""Image classification datasets in their official file formats, verified and loaded once.

Supported: ``mnist`` and ``fashion_mnist`` (gzip IDX files), ``cifar10`` (the official *python*
format, ``cifar-10-batches-py/`` with any ``data_batch_*`` present plus ``test_batch``),
``digits`` (scikit-learn's bundled 8x8 digits, no files) and ``random`` (uniform noise of MNIST's
shape, for benchmarks and tests that must not depend on files).

The data directory is the ``data_dir`` argument, else ``$L2O_DATA_DIR``, else a per-user cache.
Missing MNIST-style files are downloaded from their official locations and CIFAR-10 from its
official archive, with checksums verified by pooch. Files already present are verified too: a
file that fails its checksum or is not in the expected format is refused, never silently used.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pooch

from l2o.errors import L2OError

DATA_DIR_VARIABLE = "L2O_DATA_DIR"


class Dataset(NamedTuple):
    """A classification dataset as normalized host arrays.

    Attributes:
      train_images: float32 ``(N_train, H, W, C)`` in [0, 1].
      train_labels: int32 ``(N_train,)``.
      test_images: float32 ``(N_test, H, W, C)`` in [0, 1].
      test_labels: int32 ``(N_test,)``.
      num_classes: number of label values.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


class RemoteFile(NamedTuple):
    """A file of an official distribution: its name, sha256 and download locations (in order)."""

    name: str
    sha256: str
    urls: tuple[str, ...]


def _idx_files(mirrors: tuple[str, ...], hashes: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, sha, tuple(base + name for base in mirrors)) for name, sha in hashes.items())


IDX_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _idx_files(
        ("https://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion_mnist": _idx_files(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
}

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    "md5:c58f30108f718f92721af3b95e74349a",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
)

_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 0x00000803, 0x00000801


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit``, else ``$L2O_DATA_DIR``, else the user cache."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE]).expanduser()
    return Path(pooch.os_cache("l2o"))


def _refuse(path: Path, problem: str) -> L2OError:
    return L2OError(f"{path}: {problem}; delete it to download it again, or replace it with the official file")


def _verified(folder: Path, remote: RemoteFile) -> Path:
    """``folder/remote.name``, downloaded if missing; refused if its sha256 differs."""
    path = folder / remote.name
    if path.is_file():
        actual = pooch.file_hash(str(path))
        if actual != remote.sha256:
            raise _refuse(path, f"sha256 {actual[:12]}... differs from the official {remote.sha256[:12]}...")
        return path
    return _download(folder, remote)


def _download(folder: Path, remote: RemoteFile, processor=None) -> Path:
    known_hash = remote.sha256 if ":" in remote.sha256 else f"sha256:{remote.sha256}"
    errors = []
    for url in remote.urls:
        try:
            pooch.retrieve(url, known_hash, fname=remote.name, path=folder, processor=processor, progressbar=True)
            return folder / remote.name
        except Exception as error:  # network, HTTP, permission and checksum errors alike
            errors.append(f"{type(error).__name__}")
    raise L2OError(
        f"{folder / remote.name} is missing and could not be downloaded ({', '.join(errors)}); "
        f"put the official file there, or pass --data_dir (or set {DATA_DIR_VARIABLE}) to a folder that has it"
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Reads a gzip IDX file of unsigned bytes with the given magic number.

    Returns:
      uint8 array of the shape stated in the header, e.g. ``(N, 28, 28)`` or ``(N,)``.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise _refuse(path, f"not a readable gzip file ({error})") from None
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        raise _refuse(path, f"not an IDX file with magic number {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
    if len(shape) != ndim or len(raw) - header != int(np.prod(shape)):
        raise _refuse(path, "IDX header and data size disagree (truncated file?)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _load_idx(name: str, root: Path) -> Dataset:
    folder = root / name
    missing = [remote.name for remote in IDX_FILES[name] if not (folder / remote.name).is_file()]
    try:
        files = {remote.name: _verified(folder, remote) for remote in IDX_FILES[name]}
    except L2OError as error:
        if not missing or "could not be downloaded" not in str(error):
            raise
        raise L2OError(
            f"{name}: {', '.join(missing)} missing in {folder} and could not be downloaded; put the "
            f"official files there, or pass --data_dir (or set {DATA_DIR_VARIABLE}) to a folder with a "
            f"{name}/ subfolder holding them"
        ) from None

    def split(prefix: str):
        images = read_idx(files[f"{prefix}-images-idx3-ubyte.gz"], _IDX_IMAGES_MAGIC)
        labels = read_idx(files[f"{prefix}-labels-idx1-ubyte.gz"], _IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise _refuse(folder, f"{prefix} images ({images.shape[0]}) and labels ({labels.shape[0]}) differ in count")
        return images[..., None].astype(np.float32) / 255.0, labels.astype(np.int32)

    return Dataset(*split("train"), *split("t10k"), num_classes=10)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and NumPy arrays: a CIFAR batch cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy":
            return getattr(np, name)
        try:
            multiarray = importlib.import_module("numpy._core.multiarray")
        except ImportError:  # NumPy 1.x
            multiarray = importlib.import_module("numpy.core.multiarray")
        return getattr(multiarray, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 python batch.

    Returns:
      ``(images uint8 (N, 32, 32, 3), labels int32 (N,))``.
    """
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], np.int64)
    except Exception as error:  # pickle raises many types on foreign or damaged files
        raise _refuse(path, f"not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise _refuse(path, f"CIFAR-10 batch with data {data.dtype}{data.shape} and {labels.size} labels; "
                            "expected uint8 (N, 3072) and N labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise _refuse(path, "CIFAR-10 labels outside 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def find_cifar_folder(root: Path) -> Path | None:
    """``cifar-10-batches-py`` in ``root``, ``root/cifar10`` or any subfolder of ``root``."""
    candidates = [root / CIFAR_FOLDER, root / "cifar10" / CIFAR_FOLDER, *sorted(root.glob(f"*/{CIFAR_FOLDER}"))]
    return next((c for c in candidates if (c / "test_batch").is_file()), None)


def _load_cifar10(root: Path) -> Dataset:
    folder = find_cifar_folder(root)
    if folder is None:
        try:
            _download(root / "cifar10", CIFAR_ARCHIVE, processor=pooch.Untar(extract_dir="."))
        except L2OError:
            raise L2OError(
                f"cifar10: no {CIFAR_FOLDER}/test_batch under {root} and the official archive could not be "
                f"downloaded; put {CIFAR_FOLDER}/ (data_batch_* and test_batch) in {root / 'cifar10'}, or pass "
                f"--data_dir (or set {DATA_DIR_VARIABLE}) to a folder that has it"
            ) from None
        folder = find_cifar_folder(root)
        if folder is None:
            raise L2OError(f"the CIFAR-10 archive in {root / 'cifar10'} has no {CIFAR_FOLDER}/test_batch")
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files:
        raise L2OError(f"{folder} has no data_batch_* file; put at least data_batch_1 of the official CIFAR-10 "
                       "python version there")
    train = [read_cifar_batch(path) for path in train_files]
    test_images, test_labels = read_cifar_batch(folder / "test_batch")
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return Dataset(train_images.astype(np.float32) / 255.0, train_labels,
                   test_images.astype(np.float32) / 255.0, test_labels, num_classes=10)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[..., None] / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))  # a fixed 80/20 split
    train, test = order[: len(order) * 4 // 5], order[len(order) * 4 // 5:]
    return Dataset(images[train], labels[train], images[test], labels[test], num_classes=10)


def _random_data(num_train: int = 10_000, num_test: int = 2_000) -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(num_train + num_test, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, num_train + num_test).astype(np.int32)
    return Dataset(images[:num_train], labels[:num_train], images[num_train:], labels[num_train:], num_classes=10)


DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits", "random")


def load_dataset(name: str, directory: str | os.PathLike | None = None) -> Dataset:
    """Loads dataset ``name`` (one of :data:`DATASETS`), downloading missing official files.

    Args:
      name: dataset name.
      directory: data directory; defaults to ``$L2O_DATA_DIR`` or the user cache.

    Raises:
      L2OError: unknown name; missing files that cannot be downloaded; files that fail their
        checksum or are not in the official format.
    """
    if name in IDX_FILES:
        return _load_idx(name, data_dir(directory))
    if name == "cifar10":
        return _load_cifar10(data_dir(directory))
    if name == "digits":
        return _load_digits()
    if name == "random":
        return _random_data()
    raise L2OError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
