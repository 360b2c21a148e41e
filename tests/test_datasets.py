"""Dataset files: official formats parsed exactly, checksums enforced, downloads verified,
foreign or damaged files refused with a one-line error."""

import gzip
import hashlib
import http.server
import os
import pickle
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from l2o.errors import L2OError
from l2o.tasks import datasets
from l2o.tasks.datasets import RemoteFile, load_dataset, read_cifar_batch, read_idx

REPO_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_data_dir(name: str) -> Path:
    """A data directory holding ``name``'s files, or skip with the reason."""
    for candidate in (os.environ.get("L2O_DATA_DIR"), REPO_DATA):
        if candidate and (Path(candidate) / name).is_dir():
            return Path(candidate)
    pytest.skip(f"no data directory with {name}/ (set L2O_DATA_DIR or place ../shared/data beside the repo)")


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_mnist(folder: Path, rng) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 6),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (4, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 4),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def official_as(folder: Path, monkeypatch, urls=("http://127.0.0.1:9/",)) -> None:
    """Makes the files now in ``folder`` the 'official' MNIST files, downloadable from ``urls``."""
    files = tuple(
        RemoteFile(name, sha256(folder / name), tuple(url + name for url in urls))
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    )
    monkeypatch.setitem(datasets.IDX_FILES, "mnist", files)


def test_idx_files_parse_exactly(tmp_path, monkeypatch):
    arrays = tiny_mnist(tmp_path / "mnist", np.random.default_rng(0))
    official_as(tmp_path / "mnist", monkeypatch)
    data = load_dataset("mnist", tmp_path)
    assert data.train_images.shape == (6, 28, 28, 1) and data.train_images.dtype == np.float32
    np.testing.assert_allclose(data.train_images[..., 0], arrays["train-images-idx3-ubyte.gz"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.test_labels, arrays["t10k-labels-idx1-ubyte.gz"])


def test_a_file_failing_its_checksum_is_refused(tmp_path, monkeypatch):
    tiny_mnist(tmp_path / "mnist", np.random.default_rng(0))
    official_as(tmp_path / "mnist", monkeypatch)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    before = (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    with pytest.raises(L2OError, match="t10k-labels-idx1-ubyte.gz: sha256 .* differs from the official"):
        load_dataset("mnist", tmp_path)
    assert (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes() == before  # never replaced


def test_missing_files_offline_name_every_file_and_the_fix(tmp_path, monkeypatch):
    official_as_dir = tmp_path / "source"
    tiny_mnist(official_as_dir, np.random.default_rng(0))
    official_as(official_as_dir, monkeypatch)  # unreachable URL: 127.0.0.1:9
    with pytest.raises(L2OError) as error:
        load_dataset("mnist", tmp_path / "empty")
    message = str(error.value)
    assert "\n" not in message and "--data_dir" in message and "L2O_DATA_DIR" in message
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in message


@pytest.fixture
def file_server(tmp_path):
    """Serves ``tmp_path/served`` over HTTP on localhost; yields (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_missing_files_are_downloaded_and_verified(tmp_path, monkeypatch, file_server):
    served, url = file_server
    arrays = tiny_mnist(served, np.random.default_rng(1))
    official_as(served, monkeypatch, urls=("http://127.0.0.1:9/", url))  # first mirror down
    data = load_dataset("mnist", tmp_path / "cache")
    np.testing.assert_array_equal(data.train_labels, arrays["train-labels-idx1-ubyte.gz"])
    assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_a_download_failing_its_checksum_is_not_kept(tmp_path, monkeypatch, file_server):
    served, url = file_server
    tiny_mnist(served, np.random.default_rng(1))
    official_as(served, monkeypatch, urls=(url,))
    write_idx(served / "train-labels-idx1-ubyte.gz", np.ones(6))  # the server now serves other bytes
    with pytest.raises(L2OError, match="could not be downloaded"):
        load_dataset("mnist", tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte.gz").exists()


@pytest.mark.parametrize("content, problem", [
    (b"not gzip at all", "not a readable gzip file"),
    (gzip.compress(struct.pack(">I", 0x0801) + b"\0" * 8, mtime=0), "not an IDX file"),
    (gzip.compress(struct.pack(">III", 0x0803, 10, 28) + b"\0" * 100, mtime=0), "header and data size disagree"),
], ids=["not gzip", "not IDX", "size mismatch"])
def test_foreign_idx_content_is_refused(tmp_path, content, problem):
    path = tmp_path / "file.gz"
    path.write_bytes(content)
    with pytest.raises(L2OError, match=problem):
        read_idx(path, 0x0803)


def write_cifar_batch(path: Path, images: np.ndarray, labels) -> None:
    """``images`` (N, 32, 32, 3) uint8 in the official layout: rows of R, G, B planes."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": list(labels), b"data": data, b"filenames": []}, f)


def test_cifar_batches_parse_exactly_from_any_subfolder(tmp_path):
    folder = tmp_path / "my-cifar-copy" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (3, 2, 4)]
    labels = [rng.integers(0, 10, len(x)) for x in images]
    write_cifar_batch(folder / "data_batch_1", images[0], labels[0])
    write_cifar_batch(folder / "data_batch_3", images[1], labels[1])
    write_cifar_batch(folder / "test_batch", images[2], labels[2])
    data = load_dataset("cifar10", tmp_path)
    np.testing.assert_allclose(data.train_images * 255.0, np.concatenate(images[:2]), atol=1e-4)
    np.testing.assert_array_equal(data.train_labels, np.concatenate(labels[:2]))
    np.testing.assert_allclose(data.test_images * 255.0, images[2], atol=1e-4)
    # the red plane comes first in the file: pixel (0, 0) red is data[0, 0]
    assert data.train_images[0, 0, 0, 0] * 255.0 == pytest.approx(images[0][0, 0, 0, 0])


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload, problem", [
    ({b"data": Exploit(), b"labels": []}, "refusing to load"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "expected uint8 \\(N, 3072\\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "labels outside 0..9"),
    ({b"labels": [0]}, "not a CIFAR-10 python batch"),
])
def test_foreign_cifar_batches_are_refused(tmp_path, payload, problem):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(L2OError, match=problem):
        read_cifar_batch(path)


def test_data_directory_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("L2O_DATA_DIR", str(tmp_path / "env"))
    assert datasets.data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert datasets.data_dir() == tmp_path / "env"
    monkeypatch.delenv("L2O_DATA_DIR")
    assert "l2o" in str(datasets.data_dir())


def test_digits_need_no_files():
    data = load_dataset("digits")
    assert data.train_images.shape == (1437, 8, 8, 1) and data.test_images.shape == (360, 8, 8, 1)
    assert 0.0 <= data.train_images.min() and data.train_images.max() == 1.0
    assert set(np.unique(data.train_labels)) == set(range(10))


def test_unknown_dataset():
    with pytest.raises(L2OError, match="unknown dataset 'svhn'; choose one of: mnist"):
        load_dataset("svhn")


@pytest.mark.parametrize("name, pixel_mean", [("mnist", 0.1307), ("fashion_mnist", 0.2860)])
def test_real_idx_datasets(name, pixel_mean):
    data = load_dataset(name, real_data_dir(name))
    assert data.train_images.shape == (60000, 28, 28, 1) and data.test_images.shape == (10000, 28, 28, 1)
    assert float(data.train_images.mean()) == pytest.approx(pixel_mean, abs=1e-4)  # published means
    assert np.bincount(data.test_labels).tolist() == (
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009] if name == "mnist" else [1000] * 10)


def test_real_cifar_subset():
    root = real_data_dir("cifar10-jpeg75")
    data = load_dataset("cifar10", root)
    assert data.train_images.shape[1:] == (32, 32, 3) and data.test_images.shape == (10000, 32, 32, 3)
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def test_missing_cifar_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CIFAR_ARCHIVE", RemoteFile("c.tar.gz", "md5:0", ("http://127.0.0.1:9/c.tar.gz",)))
    with pytest.raises(L2OError, match="no cifar-10-batches-py/test_batch under .* put cifar-10-batches-py/"):
        load_dataset("cifar10", tmp_path)
