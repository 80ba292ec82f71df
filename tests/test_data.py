"""Data loaders: shapes, classes, checksums, split disjointness and determinism, clear errors."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from mpq.data import datasets as data
from mpq.data.datasets import DataError, augment, batches, load_fashion_mnist, make_splits, split_indices


def test_fashion_mnist_shapes_and_classes():
    train, test = load_fashion_mnist()
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [6000] * 10   # balanced, 10 classes
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert len(train.classes) == 10


def test_split_indices_disjoint_and_deterministic():
    a = split_indices(1000, torch.Generator().manual_seed(3), 100, 50, train_size=600)
    b = split_indices(1000, torch.Generator().manual_seed(3), 100, 50, train_size=600)
    c = split_indices(1000, torch.Generator().manual_seed(4), 100, 50, train_size=600)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    train, score, calib = (set(x.tolist()) for x in a)
    assert (len(train), len(score), len(calib)) == (600, 100, 50)
    assert not (train & score) and not (train & calib) and not (score & calib)


def test_split_sizes_rejected_when_nothing_left():
    with pytest.raises(ValueError, match="leaves no training images"):
        split_indices(100, torch.Generator().manual_seed(0), 60, 40)


def test_make_splits_deterministic(tiny_splits):
    again = make_splits("fashion_mnist", seed=0, train_size=256, score_size=128, calib_size=128, test_size=256)
    assert torch.equal(tiny_splits.train.images, again.train.images)
    assert torch.equal(tiny_splits.score.labels, again.score.labels)
    assert len(tiny_splits.test) == 256


def _copy_fmnist(tmp_path):
    folder = tmp_path / "fmnist"
    shutil.copytree(data.find_fashion_mnist(), folder)
    return folder


def test_missing_file_gives_clear_error(tmp_path):
    folder = _copy_fmnist(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="not found.*bootstrap"):
        load_fashion_mnist(folder)
    with pytest.raises(DataError, match="Fashion-MNIST not found.*dataset-fashion-mnist"):
        data.find_fashion_mnist((tmp_path / "nowhere",))


def test_corrupt_file_gives_clear_error(tmp_path):
    folder = _copy_fmnist(tmp_path)
    path = folder / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DataError, match="corrupt"):
        load_fashion_mnist(folder)
    with pytest.raises(DataError, match="truncated"):        # without checksums the IDX reader still notices
        load_fashion_mnist(folder, verify=False)


def test_animal_mnist_shuffled_before_split():
    full = data.load_animal_mnist()
    assert full.images.shape == (10000, 1, 28, 28)
    assert full.labels[:1000].unique().tolist() == [0]       # labels arrive sorted ...
    splits = make_splits("animal_mnist", seed=0, train_size=None, score_size=500, calib_size=500)
    assert len(splits.test) == 2000
    assert splits.test.labels.unique().numel() == 10         # ... and every split still sees every class
    assert splits.score.labels.unique().numel() == 10


def test_mnist5k():
    ds = data.load_mnist5k()
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [500] * 10


def test_image_folder(tmp_path):
    from PIL import Image

    for name, value in (("cats", 10), ("dogs", 200)):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 30, 3), value, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    ds = data.load_image_folder(tmp_path)
    assert ds.images.shape == (6, 1, 28, 28) and ds.classes == ("cats", "dogs")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="does not exist"):
        data.load_image_folder(tmp_path / "missing")


def _folder(root, classes=("cats", "dogs"), per_class=3, value=10):
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), value + 40 * c + i, np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.mark.timeout(30)
def test_image_folder_classes_are_the_visible_sub_folders_and_every_bad_file_is_named(tmp_path, monkeypatch):
    from PIL import Image

    root = _folder(tmp_path / "pets")
    (root / ".ipynb_checkpoints").mkdir()                   # hidden: no class (it would have become class 0)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / ".ipynb_checkpoints" / "0.png")
    (root / "cats" / "._0.png").write_bytes(b"macOS metadata, not an image")     # hidden: not an image of the class
    ds = data.load_image_folder(root)
    assert ds.classes == ("cats", "dogs") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    (root / "zebras").mkdir()                               # an empty class folder would be a phantom class
    with pytest.raises(DataError, match=r"class folder\(s\) \['zebras'\] hold no images"):
        data.load_image_folder(root)
    (root / "zebras").rmdir()
    (root / "dogs" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"image file {root / 'dogs' / 'broken.png'} cannot be read.*remove or replace"):
        data.load_image_folder(root)
    (root / "dogs" / "broken.png").unlink()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)     # 8x8 = 64 pixels: over twice the limit, as a huge image
    with pytest.raises(DataError, match=f"image file {root / 'cats' / '0.png'} .*DecompressionBombError"):
        data.load_image_folder(root)
    monkeypatch.undo()
    one = _folder(tmp_path / "one", classes=("cats",))
    (one / "empty").mkdir()
    with pytest.raises(DataError, match="need at least 2"):
        data.load_image_folder(_folder(tmp_path / "single", classes=("cats",)))
    with pytest.raises(DataError, match=r"\['empty'\] hold no images"):     # two folders, one empty: no pass
        data.load_image_folder(one)


@pytest.mark.timeout(30)
def test_a_folder_changed_since_training_is_refused_with_the_reason(tmp_path, caplog):
    from PIL import Image

    root = _folder(tmp_path / "pets", per_class=6)
    splits = make_splits("folder", seed=0, train_size=None, score_size=2, calib_size=2, root=root)
    identity = splits.identity
    assert identity["images"] == 12 and len(identity["files_sha256"]) == 64
    assert torch.equal(data.splits_from_identity(identity, root=root).score.images, splits.score.images)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "cats" / "new.png")
    with pytest.raises(DataError, match="changed since the checkpoint was trained: it now holds 13 images, the "
                                        "checkpoint was trained on 12.*would no longer be held out"):
        data.splits_from_identity(identity, root=root)
    (root / "cats" / "new.png").unlink()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(root / "cats" / "0.png")     # same name, other pixels
    with pytest.raises(DataError, match="holds 12 images as before, but files were renamed, replaced or edited"):
        data.splits_from_identity(identity, root=root)
    old = {k: v for k, v in identity.items() if k not in ("images", "files_sha256")}   # written before the digest
    data.splits_from_identity(old, root=root)
    assert "records no digest" in caplog.text


@pytest.mark.timeout(30)
def test_zero_or_negative_sizes_are_errors_not_all(tiny_splits):
    from mpq.training.oneshot import training_subset

    train = tiny_splits.train
    assert len(training_subset(train, None)) == len(train) and len(training_subset(train, 10)) == 10
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"train_size must be a positive number of images .*got {bad}"):
            training_subset(train, bad)
        with pytest.raises(ValueError, match=f"test_size must be a positive number of images .*got {bad}"):
            make_splits("fashion_mnist", seed=0, train_size=None, score_size=8, calib_size=8, test_size=bad)
        with pytest.raises(ValueError, match=f"score_size must be a positive number of images, got {bad}"):
            split_indices(100, torch.Generator().manual_seed(0), bad, 10)


def test_augment_is_a_shifted_window():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (16, 1, 28, 28), dtype=torch.uint8)
    out = augment(images, gen, pad=2, flip=False)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(16):   # every output is some 28x28 window of the padded image
        windows = [padded[i, :, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(augment(images, gen, pad=0, flip=False), images)
    a = augment(images, torch.Generator().manual_seed(5), pad=2, flip=True)
    b = augment(images, torch.Generator().manual_seed(5), pad=2, flip=True)
    assert torch.equal(a, b)


def test_batches_cover_data_once(tiny_splits):
    seen = torch.cat([y for _, y in batches(tiny_splits.train, 100, shuffle=True, gen=torch.Generator())])
    assert sorted(seen.tolist()) == sorted(tiny_splits.train.labels.tolist())
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        next(batches(tiny_splits.train, 10, shuffle=True))


def test_acquire_copies_verified_files_and_writes_the_manifest(tmp_path):
    from mpq.data.acquire import DataSet, acquire

    src = tmp_path / "pkg"
    src.mkdir()
    (src / "a.bin").write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    ds = DataSet("toy", "toy-set", {"a.bin": digest}, "test")
    manifest = acquire(tmp_path / "data", (ds,), sources={"toy": src})
    assert (tmp_path / "data/toy-set/a.bin").read_bytes() == b"abc"
    assert manifest == json.loads((tmp_path / "data/manifest.json").read_text())
    assert manifest["data_sets"][0]["files"] == [{"file": "a.bin", "bytes": 3, "sha256": digest}]
    (src / "a.bin").write_bytes(b"abd")            # the copy is kept: its checksum is still the pinned one
    acquire(tmp_path / "data", (ds,), sources={"toy": src})
    assert (tmp_path / "data/toy-set/a.bin").read_bytes() == b"abc"


def test_acquire_refuses_a_changed_source_and_leaves_no_partial_file(tmp_path):
    from mpq.data.acquire import DataSet, acquire

    src = tmp_path / "pkg"
    src.mkdir()
    (src / "a.bin").write_bytes(b"tampered")
    ds = DataSet("toy", "toy-set", {"a.bin": hashlib.sha256(b"abc").hexdigest()}, "test")
    with pytest.raises(DataError, match="not the version the study pins"):
        acquire(tmp_path / "data", (ds,), sources={"toy": src})
    assert list((tmp_path / "data/toy-set").iterdir()) == []
    assert not (tmp_path / "data/manifest.json").exists()


def test_the_study_copy_is_read_first(tmp_path, monkeypatch):
    """Loaders prefer data/<folder> (the data stage's copy) to the installed package (test_mnist5k reads the
    package's file; the copy has the same checksum)."""
    from mpq.data import datasets
    from mpq.data.acquire import DATA_SETS, acquire

    acquire(tmp_path / "data", tuple(d for d in DATA_SETS if d.name == "mnist5k"))
    monkeypatch.setattr(datasets, "repo_root", lambda: tmp_path)
    assert datasets._study_copy("mnist5k", datasets.MNIST5K_FILES) == tmp_path / "data/mnist5k"
    read = []
    table = np.zeros((20, 785))
    table[:, -1] = np.arange(20) % 10
    monkeypatch.setattr(datasets.np, "genfromtxt", lambda fname, delimiter: read.append(fname) or table)
    assert datasets.load_mnist5k().labels.tolist() == list(range(10)) * 2
    assert read == [tmp_path / "data/mnist5k/mnist_5k.csv.gz"]
    assert datasets._study_copy("animal-mnist", datasets.ANIMAL_MNIST_FILES) is None    # not copied: the package


def test_every_pinned_file_is_listed_in_data_readme(root):
    from mpq.data.acquire import DATA_SETS

    text = (root / "data/README.md").read_text()
    for ds in DATA_SETS:
        for name, digest in ds.files.items():
            assert f"`{ds.folder}/{name}`" in text and digest in text, name
