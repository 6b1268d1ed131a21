"""Datasets stage on real files: FashionMNIST from Debian's package, USPS through a local mirror."""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from chaosgd import datasets
from chaosgd.runs import dataset_prep
from chaosgd.runs.artifacts import file_digest, load_tensors


def _prepare(tmp: Path, name: str, *extra: str) -> tuple[int, Path, Path]:
    out, manifest = tmp / "out" / f"{name}.pt", tmp / "out" / f"{name}.json"
    # --resize is required (the rule always passes the config's); the paper's mode unless given
    resize = [] if "--resize" in extra else ["--resize", "reference"]
    rc = datasets.main(
        [name, "--out", str(out), "--manifest", str(manifest), "--cache-dir", str(tmp / "cache")]
        + resize
        + list(extra)
    )
    return rc, out, manifest


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory, fmnist_dir):
    tmp = tmp_path_factory.mktemp("fmnist")
    rc, out, manifest = _prepare(
        tmp, "fmnist", "--local-dir", str(fmnist_dir), "--no-download", "--resize", "antialias"
    )
    assert rc == 0
    return load_tensors(out), json.loads(manifest.read_text())


def test_fmnist_shapes_labels_and_normalization(fmnist):
    data, _ = fmnist
    assert data["train_x"].shape == (60000, 1, 16, 16)
    assert data["test_x"].shape == (10000, 1, 16, 16)
    assert data["train_x"].dtype == data["test_x"].dtype == torch.float32
    assert data["train_y"].dtype == data["test_y"].dtype == torch.int64
    for y in (data["train_y"], data["test_y"]):
        assert set(y.unique().tolist()) == set(range(10))
    x = data["train_x"].double()
    assert abs(x.mean().item()) < 1e-5
    assert abs(x.std().item() - 1.0) < 1e-5
    # the test split is normalized with the training statistics, so it is only close to (0, 1)
    assert abs(data["test_x"].double().mean().item()) < 0.05


def test_fmnist_manifest_matches_files(fmnist, fmnist_dir):
    data, manifest = fmnist
    assert manifest["dataset"] == "fmnist"
    assert "with anti-aliasing" in manifest["resize"]
    assert manifest["resize_mode"] == "antialias"
    assert manifest["splits"]["train"]["samples"] == 60000
    assert manifest["splits"]["train"]["per_class"] == [6000] * 10
    assert manifest["splits"]["test"]["per_class"] == [1000] * 10
    assert manifest["normalization"]["mean"] == pytest.approx(data["mean"])
    assert len(manifest["sources"]) == 4
    for src in manifest["sources"]:
        path = fmnist_dir / src["file"]
        assert src["origin"] == "local"
        assert src["sha256"] == file_digest(path, "sha256")
        assert src["md5_of"] == "decompressed content"
        assert src["md5"] == hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()


# --- the resize modes -----------------------------------------------------------------------


def _old_to_16x16(images: np.ndarray) -> torch.Tensor:
    """to_16x16 as it was before the resize modes existed (antialiasing only), verbatim."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(
        x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False
    )
    return x.contiguous()


def _reference_pipeline(images: np.ndarray) -> torch.Tensor:
    """The authors' code: a PIL image (as torchvision's FashionMNIST gives it), ToTensor, then
    Resize(16), which torchvision 0.12 did without antialiasing on tensors."""
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Resize(16, antialias=False)])
    return torch.stack([transform(Image.fromarray(img, mode="L")) for img in images])


def _images(n: int = 8, seed: int = 0) -> np.ndarray:
    """28×28 uint8 images with fine stripes and noise, where the two modes differ most."""
    rng = np.random.default_rng(seed)
    stripes = (np.indices((28, 28))[1] % 2 * 255).astype(np.uint8)
    noise = rng.integers(0, 256, size=(n - 1, 28, 28), dtype=np.uint8)
    return np.concatenate([stripes[None], noise])


def test_reference_resize_is_torchvisions_without_antialiasing_bit_for_bit():
    images = _images()
    ours = dataset_prep.to_16x16(images, "reference")
    assert ours.shape == (8, 1, 16, 16) and ours.dtype == torch.float32
    assert torch.equal(ours, _reference_pipeline(images))
    # and it is another resize than antialias: stripes of period 2 pixels, finer than the
    # 16×16 grid can hold, average to grey with antialiasing and alias to a false wave without
    default = dataset_prep.to_16x16(images, "antialias")
    assert (ours - default).abs().mean() > 0.05
    assert default[0].std() < 0.05 and ours[0].std() > 0.25


def test_antialias_resize_is_the_output_before_the_option():
    images = _images(seed=1)
    assert torch.equal(dataset_prep.to_16x16(images, "antialias"), _old_to_16x16(images))
    # native 16×16 images are only scaled to [0, 1], whatever the mode
    small = images[:, :16, :16]
    assert torch.equal(
        dataset_prep.to_16x16(small, "reference"), dataset_prep.to_16x16(small, "antialias")
    )


def test_unknown_resize_mode_is_refused(tmp_path, capsys):
    with pytest.raises(dataset_prep.DatasetError, match="resize mode must be one of"):
        dataset_prep.to_16x16(_images(), "nearest")
    with pytest.raises(SystemExit):
        _prepare(tmp_path, "fmnist", "--resize", "nearest")
    assert "invalid choice: 'nearest'" in capsys.readouterr().err


def test_resize_mode_is_a_dataset_setting_passed_to_the_stage():
    from chaosgd.planning import plan
    from chaosgd.planning.config import ConfigError, validate_config

    cfg = validate_config({})
    # the paper's setting by default: the reference code's resize, without antialiasing
    assert cfg["datasets"]["fmnist"]["resize"] == "reference"
    assert "--resize reference" in plan.datasets_args(cfg, "fmnist")
    cfg = validate_config({"datasets": {"fmnist": {"resize": "antialias"}}})
    assert "--resize antialias" in plan.datasets_args(cfg, "fmnist")
    with pytest.raises(ConfigError, match="datasets.fmnist.resize: 'nearest' is not one of"):
        validate_config({"datasets": {"fmnist": {"resize": "nearest"}}})


def test_fmnist_reference_resize_on_the_real_data(tmp_path, fmnist, fmnist_dir):
    rc, out, manifest_path = _prepare(
        tmp_path, "fmnist", "--local-dir", str(fmnist_dir), "--no-download", "--resize", "reference"
    )
    assert rc == 0
    data, manifest = load_tensors(out), json.loads(manifest_path.read_text())
    assert manifest["resize_mode"] == "reference"
    assert "without anti-aliasing" in manifest["resize"]
    raw = gzip.decompress((fmnist_dir / "train-images-idx3-ubyte.gz").read_bytes())
    first = np.frombuffer(raw, np.uint8, offset=16, count=16 * 28 * 28).reshape(16, 28, 28)
    expected = (_reference_pipeline(first) - manifest["normalization"]["mean"]) / manifest[
        "normalization"
    ]["std"]
    assert torch.equal(data["train_x"][:16], expected)
    # another dataset than the antialiased one, but the same images and labels
    default, _ = fmnist
    assert torch.equal(data["train_y"], default["train_y"])
    assert (data["train_x"] - default["train_x"]).abs().mean() > 0.05


# --- the image side -------------------------------------------------------------------------


def test_fmnist_at_its_native_28x28_is_not_resized(tmp_path, fmnist, fmnist_dir):
    """image_side 28: the 784-input MLP of the paper's text sees FashionMNIST as published."""
    rc, out, manifest_path = _prepare(
        tmp_path, "fmnist", "--local-dir", str(fmnist_dir), "--no-download", "--image-side", "28"
    )
    assert rc == 0
    data, manifest = load_tensors(out), json.loads(manifest_path.read_text())
    assert data["train_x"].shape == (60000, 1, 28, 28)
    assert data["test_x"].shape == (10000, 1, 28, 28)
    assert manifest["image_shape"] == [1, 28, 28]
    assert manifest["resize"] == "none (native 28x28)" and manifest["resize_mode"] is None
    # the published pixels, scaled to [0, 1] and normalized, nothing else
    raw = gzip.decompress((fmnist_dir / "train-images-idx3-ubyte.gz").read_bytes())
    first = np.frombuffer(raw, np.uint8, offset=16, count=16 * 28 * 28).reshape(16, 1, 28, 28)
    norm = manifest["normalization"]
    expected = (torch.from_numpy(first.astype(np.float32) / 255.0) - norm["mean"]) / norm["std"]
    assert torch.equal(data["train_x"][:16], expected.float())
    assert abs(data["train_x"].double().mean().item()) < 1e-5
    # the same images and labels as at 16×16
    default, default_manifest = fmnist
    assert default_manifest["image_shape"] == [1, 16, 16]
    assert torch.equal(data["train_y"], default["train_y"])


def test_no_resize_makes_the_resize_mode_moot(tmp_path):
    md5 = _small_fmnist(tmp_path / "src")
    prepared = []
    for mode in ("reference", "antialias"):
        rc, out, manifest = _prepare(
            tmp_path / mode, "fmnist", "--local-dir", str(tmp_path / "src"), *md5,
            "--resize", mode, "--image-side", "28",
        )  # fmt: skip
        assert rc == 0
        prepared.append(load_tensors(out)["train_x"])
        assert json.loads(manifest.read_text())["resize_mode"] is None
    assert prepared[0].shape == (20, 1, 28, 28) and torch.equal(*prepared)
    # and 16, the default, as before: resized
    rc, out, _ = _prepare(tmp_path / "16", "fmnist", "--local-dir", str(tmp_path / "src"), *md5)
    assert rc == 0 and load_tensors(out)["train_x"].shape == (20, 1, 16, 16)


def test_a_side_the_dataset_is_not_prepared_at_is_refused(tmp_path, capsys):
    # before any file is looked for: USPS is stored at 16×16 and never upsampled
    rc, out, _ = _prepare(tmp_path, "usps", "--no-download", "--image-side", "28")
    err = capsys.readouterr().err
    assert rc == 1 and out.parent.exists() is False
    assert err == "error: datasets.usps.image_side: USPS is prepared at 16x16, not 28x28\n"
    md5 = _small_fmnist(tmp_path / "src")
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5 + ["--image-side", "20"], capsys)
    assert (
        "datasets.fmnist.image_side: FashionMNIST is prepared at 16x16 or 28x28, not 20x20" in err
    )
    with pytest.raises(dataset_prep.DatasetError, match="cannot give 28x28"):
        dataset_prep.to_side(_images()[:, :16, :16], "reference", 28)


def test_prepared_data_of_another_side_than_asked_are_caught():
    images = torch.zeros(2, 1, 16, 16)
    tensors = {"train_x": images, "train_y": torch.zeros(2, dtype=torch.int64)}
    tensors |= {"test_x": images, "test_y": torch.zeros(2, dtype=torch.int64)}
    manifest = {
        "image_shape": [1, 16, 16],
        "splits": {"train": {"samples": 2}, "test": {"samples": 2}},
    }
    problems = dataset_prep.check_prepared(tensors, manifest, 28)
    assert "the manifest's image shape is [1, 16, 16], not [1, 28, 28]" in problems
    assert "train_x is torch.float32 (2, 1, 16, 16), expected float32 (N, 1, 28, 28)" in problems


def _local_copy(fmnist_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in fmnist_dir.glob("*.gz"):
        (dest / f.name).symlink_to(f)
    return dest


def test_fmnist_truncated_file_fails_with_file_named(tmp_path, fmnist_dir, capsys):
    local = _local_copy(fmnist_dir, tmp_path / "local")
    bad = local / "train-labels-idx1-ubyte.gz"
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[: len(data) // 2])
    rc, out, manifest = _prepare(tmp_path, "fmnist", "--local-dir", str(local), "--no-download")
    err = capsys.readouterr().err
    assert rc == 1
    assert str(bad) in err and "truncated" in err
    assert "Traceback" not in err
    assert not out.exists() and not manifest.exists()
    assert not any((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_fmnist_tampered_content_fails_checksum(tmp_path, fmnist_dir, capsys):
    local = _local_copy(fmnist_dir, tmp_path / "local")
    bad = local / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(bad.read_bytes()))
    payload[-1] = (payload[-1] + 1) % 10  # one label changed, still a valid gzip/IDX file
    bad.unlink()
    bad.write_bytes(gzip.compress(bytes(payload)))
    rc, out, _ = _prepare(tmp_path, "fmnist", "--local-dir", str(local), "--no-download")
    err = capsys.readouterr().err
    assert rc == 1
    assert f"checksum mismatch for {bad}" in err
    assert not out.exists()


# --- USPS through a local HTTP mirror -----------------------------------------------------


def _libsvm_bz2(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write n dense LIBSVM rows like USPS's (labels 1..10, 256 values in [-1, 1])."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, size=(n, 256)).round(6)
    labels = np.arange(n) % 10 + 1
    lines = [
        f"{lab} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row))
        for lab, row in zip(labels, values)
    ]
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    # the pixel values as torchvision's parser reads them: float32 from the decimal strings
    as_read = np.asarray([[f"{v:.6f}" for v in row] for row in values], dtype=np.float32)
    return as_read, labels


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def mirror(tmp_path):
    """A static HTTP server on 127.0.0.1 serving generated USPS files."""
    root = tmp_path / "mirror"
    root.mkdir()
    train = _libsvm_bz2(root / "usps.bz2", 60, seed=1)
    test = _libsvm_bz2(root / "usps.t.bz2", 30, seed=2)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    md5 = [f"{f}={file_digest(root / f, 'md5')}" for f in ("usps.bz2", "usps.t.bz2")]
    try:
        yield {
            "url": f"http://127.0.0.1:{server.server_address[1]}/",
            "root": root,
            "md5_args": [a for m in md5 for a in ("--md5", m)],
            "train": train,
            "test": test,
        }
    finally:
        server.shutdown()
        server.server_close()


def test_usps_download_parse_and_cache(tmp_path, mirror):
    rc, out, manifest_path = _prepare(
        tmp_path, "usps", "--mirror", mirror["url"], *mirror["md5_args"]
    )
    assert rc == 0
    data = load_tensors(out)
    manifest = json.loads(manifest_path.read_text())
    values, labels = mirror["train"]
    assert data["train_x"].shape == (60, 1, 16, 16) and data["test_x"].shape == (30, 1, 16, 16)
    assert data["train_y"].tolist() == (labels - 1).tolist()
    # torchvision's quantization of [-1, 1] to uint8, then our normalization
    expected = ((values + 1) / 2 * 255).astype(np.uint8) / np.float32(255)
    mean, std = expected.mean(dtype=np.float64), expected.std(dtype=np.float64, ddof=1)
    np.testing.assert_allclose(
        data["train_x"].reshape(60, 256).numpy(), (expected - mean) / std, atol=1e-5
    )
    assert manifest["resize"].startswith("none") and manifest["resize_mode"] is None
    assert [s["origin"] for s in manifest["sources"]] == ["download", "download"]
    assert manifest["sources"][0]["url"] == mirror["url"] + "usps.bz2"
    assert manifest["splits"]["train"]["per_class"] == [6] * 10
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["usps.bz2", "usps.t.bz2"]

    # a second run is offline: the verified files come from the cache
    for f in mirror["root"].iterdir():
        f.unlink()
    rc, _, manifest_path = _prepare(
        tmp_path, "usps", "--mirror", mirror["url"], *mirror["md5_args"]
    )
    assert rc == 0
    assert [s["origin"] for s in json.loads(manifest_path.read_text())["sources"]] == ["cache"] * 2


def test_usps_tampered_download_fails_checksum(tmp_path, mirror, capsys):
    good_md5 = mirror["md5_args"]
    blob = bz2.decompress((mirror["root"] / "usps.t.bz2").read_bytes()).replace(b"1:", b"1:-", 1)
    (mirror["root"] / "usps.t.bz2").write_bytes(bz2.compress(blob))
    rc, out, _ = _prepare(tmp_path, "usps", "--mirror", mirror["url"], *good_md5)
    err = capsys.readouterr().err
    assert rc == 1
    assert "checksum mismatch" in err and "usps.t.bz2" in err
    assert not out.exists()
    # the verified train file stays in the cache; nothing of the bad one does, not even a temp
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["usps.bz2"]


def test_usps_torchvision_checksums_are_the_default(tmp_path, mirror, capsys):
    """Without overrides the published md5s apply, and the generated files do not match them."""
    rc, _, _ = _prepare(tmp_path, "usps", "--mirror", mirror["url"])
    assert rc == 1
    assert "ec16c51db3855ca6c91edd34d0e9b197" in capsys.readouterr().err


def test_unobtainable_dataset_message(tmp_path, capsys):
    # a port nobody listens on: bind one, close it, use its number
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, _ = _prepare(tmp_path, "usps", "--mirror", f"http://127.0.0.1:{port}/")
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1, err  # one message, no traceback
    assert "dataset 'usps' (USPS) is not available" in err
    assert f"download http://127.0.0.1:{port}/usps.bz2" in err  # what was tried
    assert "datasets.usps.local_dir" in err  # how to provide it offline
    assert not out.exists()
    assert not any((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_local_folder_without_download(tmp_path, mirror, capsys):
    local = tmp_path / "local"
    shutil.copytree(mirror["root"], local)
    rc, _, manifest = _prepare(
        tmp_path, "usps", "--local-dir", str(local), "--no-download", *mirror["md5_args"]
    )
    assert rc == 0
    assert {s["origin"] for s in json.loads(manifest.read_text())["sources"]} == {"local"}
    (local / "usps.t.bz2").unlink()
    rc, _, _ = _prepare(
        tmp_path / "again", "usps", "--local-dir", str(local), "--no-download", *mirror["md5_args"]
    )
    assert rc == 1
    assert "download (disabled by config)" in capsys.readouterr().err


# --- what the sources hold: small hand-made files, refused with the file named -------------


def _idx_gz(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as a gzipped IDX file of unsigned bytes; return its --md5 argument."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload))
    return f"{path.name}={hashlib.md5(payload).hexdigest()}"


def _small_fmnist(folder: Path, **arrays: np.ndarray) -> list[str]:
    """FashionMNIST-like IDX files (20 train, 10 test images, every class), ``arrays`` replacing
    a role's content; returns the --md5 arguments that admit them."""
    rng = np.random.default_rng(0)
    content = {
        "train_images": rng.integers(0, 256, size=(20, 28, 28)),
        "train_labels": np.arange(20) % 10,
        "test_images": rng.integers(0, 256, size=(10, 28, 28)),
        "test_labels": np.arange(10) % 10,
        **arrays,
    }
    folder.mkdir(exist_ok=True)
    md5 = [_idx_gz(folder / f.name, content[f.role]) for f in dataset_prep.SPECS["fmnist"].files]
    return [a for m in md5 for a in ("--md5", m)]


def _fmnist_file(folder: Path, role: str) -> str:
    """The path a message names for a role's file (the stage resolves the paths it records)."""
    name = next(f.name for f in dataset_prep.SPECS["fmnist"].files if f.role == role)
    return str((folder / name).resolve())


def _refused(tmp: Path, name: str, folder: Path, md5: list[str], capsys) -> str:
    """Run the stage on ``folder``; check it fails with one line, writes nothing; the line."""
    rc, out, manifest = _prepare(tmp, name, "--local-dir", str(folder), "--no-download", *md5)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out.exists() and not manifest.exists()
    assert not (tmp / "out").exists() or not any((tmp / "out").iterdir())
    return err


def test_small_fmnist_files_are_prepared(tmp_path):
    """The hand-made files below differ from these in one thing each."""
    md5 = _small_fmnist(tmp_path / "src")
    rc, out, _ = _prepare(tmp_path, "fmnist", "--local-dir", str(tmp_path / "src"), *md5)
    assert rc == 0
    assert load_tensors(out)["train_x"].shape == (20, 1, 16, 16)


def test_fmnist_image_and_label_counts_must_agree(tmp_path, capsys):
    md5 = _small_fmnist(tmp_path / "src", train_labels=np.arange(19) % 10)
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    images, labels = (_fmnist_file(tmp_path / "src", r) for r in ("train_images", "train_labels"))
    assert f"{images} holds 20 images but {labels} holds 19 labels" in err


@pytest.mark.parametrize("split", ["train", "test"])
def test_fmnist_without_images_is_refused(tmp_path, capsys, split):
    empty = {f"{split}_images": np.zeros((0, 28, 28)), f"{split}_labels": np.zeros(0)}
    md5 = _small_fmnist(tmp_path / "src", **empty)
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    assert f"error: {_fmnist_file(tmp_path / 'src', f'{split}_images')}: holds no images" in err


def test_fmnist_label_outside_0_to_9_is_named_with_its_index(tmp_path, capsys):
    labels = np.arange(10) % 10
    labels[[4, 7]] = [12, 200]
    md5 = _small_fmnist(tmp_path / "src", test_labels=labels)
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    file = _fmnist_file(tmp_path / "src", "test_labels")
    assert f"error: {file}: label 12 at index 4 is outside 0..9" in err


def test_fmnist_images_of_another_size_are_refused(tmp_path, capsys):
    md5 = _small_fmnist(tmp_path / "src", train_images=np.zeros((20, 28, 27)))
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    file = _fmnist_file(tmp_path / "src", "train_images")
    assert f"error: {file}: images are 28x27 as its header says, expected 28x28" in err


def test_fmnist_training_split_must_hold_every_class(tmp_path, capsys):
    md5 = _small_fmnist(tmp_path / "src", train_labels=np.arange(20) % 8)
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    file = _fmnist_file(tmp_path / "src", "train_labels")
    assert f"error: {file}: the training split has no image of class 8, 9" in err


def test_fmnist_of_one_grey_level_cannot_be_normalized(tmp_path, capsys):
    md5 = _small_fmnist(tmp_path / "src", train_images=np.full((20, 28, 28), 7))
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    assert f"error: {_fmnist_file(tmp_path / 'src', 'train_images')}: every training pixel" in err


def _tensors_bug(bug):
    """``datasets.prepare`` with ``bug`` applied to what it returns."""
    prepare = dataset_prep.prepare

    def buggy(*args):
        tensors, manifest = prepare(*args)
        return bug(dict(tensors), manifest)

    return buggy


def _changed(key, change):
    return lambda tensors, manifest: ({**tensors, key: change(tensors[key])}, manifest)


def _miscounted(tensors, manifest):
    manifest["splits"]["test"]["samples"] += 1
    return tensors, manifest


@pytest.mark.parametrize(
    "bug, says",
    [
        (_changed("train_x", torch.Tensor.double), "train_x is torch.float64 (20, 1, 16, 16)"),
        (_changed("train_x", lambda x: x[:, :, :8]), "train_x is torch.float32 (20, 1, 8, 16)"),
        (_changed("test_x", lambda x: x * float("nan")), "test_x holds non-finite values"),
        (_changed("train_y", lambda y: y.int()), "train_y is torch.int32 (20,), expected int64"),
        (_changed("test_y", lambda y: y[:-1]), "test_y is torch.int64 (9,), expected int64 (10,)"),
        (_changed("train_y", lambda y: y + 1), "train_y holds labels outside 0..9"),
        (
            _changed("train_x", lambda x: x + 0.5),
            "train_x has mean 0.5 and std 1, expected 0 and 1",
        ),
        (_miscounted, "the manifest counts 11 test samples, the tensors 10"),
    ],
)
def test_wrong_prepared_data_are_not_written(tmp_path, capsys, monkeypatch, bug, says):
    """A bug between reading and writing must not leave a dataset file behind."""
    monkeypatch.setattr(datasets, "prepare", _tensors_bug(bug))
    md5 = _small_fmnist(tmp_path / "src")
    err = _refused(tmp_path, "fmnist", tmp_path / "src", md5, capsys)
    out = tmp_path / "out" / "fmnist.pt"
    assert f"error: {out}: not written, the prepared data are wrong: " in err
    assert says in err and "bug in chaosgd.runs.dataset_prep" in err


def _usps_line(label, values) -> str:
    return f"{label} " + " ".join(f"{j}:{v}" for j, v in enumerate(values, 1))


def _small_usps(folder: Path, train: list[str] | None = None, test: list[str] | None = None):
    """USPS-like LIBSVM files (train: 20 lines, every class; test: 10), or the given lines;
    returns the --md5 arguments that admit them."""
    rng = np.random.default_rng(0)
    default = [_usps_line(i % 10 + 1, rng.uniform(-1, 1, 256).round(4)) for i in range(20)]
    folder.mkdir(exist_ok=True)
    md5 = []
    for name, lines in (("usps.bz2", train or default), ("usps.t.bz2", test or default[:10])):
        text = "".join(line + "\n" for line in lines)
        (folder / name).write_bytes(bz2.compress(text.encode()))
        md5 += ["--md5", f"{name}={file_digest(folder / name, 'md5')}"]
    return md5, default


def test_usps_reader_gives_torchvisions_arrays(tmp_path, mirror):
    """The stage's own LIBSVM reader (which checks what it reads) is the reference's loader."""
    import torchvision

    for split, name in (("train", "usps.bz2"), ("test", "usps.t.bz2")):
        images, labels = dataset_prep._read_libsvm(mirror["root"] / name)
        ref = torchvision.datasets.USPS(str(mirror["root"]), train=split == "train")
        assert images.dtype == np.uint8 and np.array_equal(images, ref.data)
        assert labels.dtype == np.int64 and labels.tolist() == ref.targets


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda lines: lines[:2] + [lines[2].rsplit(" ", 1)[0]] + lines[3:], "line 3 has 255 "),
        (
            lambda lines: lines[:1] + [lines[1].replace("7:", "7:nan ", 1)] + lines[2:],
            "line 2 has 257 features",
        ),
        (
            lambda lines: lines[:1]
            + [_usps_line(2, [0.5] * 6 + ["nan"] + [0.5] * 249)]
            + lines[2:],
            "line 2: pixel 7 is nan; USPS pixel values are finite numbers in [-1, 1]",
        ),
        (
            lambda lines: lines[:4] + [_usps_line(5, [0.5] * 255 + ["inf"])] + lines[5:],
            "line 5: pixel 256 is inf;",
        ),
        (
            lambda lines: [_usps_line(1, [3.0] * 256)] + lines[1:],
            "line 1: pixel 1 is 3.0; USPS pixel values are finite numbers in [-1, 1]",
        ),
        (
            lambda lines: lines[:3] + [_usps_line(11, [0.0] * 256)] + lines[4:],
            "line 4: label 11 is outside 1..10",
        ),
        (
            lambda lines: lines[:3] + [_usps_line("x", [0.0] * 256)] + lines[4:],
            "line 4: label 'x' is not an integer",
        ),
        (
            lambda lines: lines[:1] + [_usps_line(2, [0.0] * 100 + ["a"] + [0.0] * 155)],
            "line 2: pixel 101 is 'a', not a number",
        ),
        (
            lambda lines: [line for line in lines if not line.startswith("4 ")],
            "no image of class 3",
        ),
    ],
)
def test_usps_lines_that_are_not_usps_are_refused(tmp_path, capsys, damage, says):
    _, lines = _small_usps(tmp_path / "src")
    md5, _ = _small_usps(tmp_path / "src", train=damage(lines))
    err = _refused(tmp_path, "usps", tmp_path / "src", md5, capsys)
    assert f"error: {(tmp_path / 'src' / 'usps.bz2').resolve()}: " in err
    assert says in err


def test_usps_without_images_is_refused(tmp_path, capsys):
    md5, _ = _small_usps(tmp_path / "src", test=[""])
    err = _refused(tmp_path, "usps", tmp_path / "src", md5, capsys)
    assert f"error: {(tmp_path / 'src' / 'usps.t.bz2').resolve()}: holds no images" in err


def test_usps_corrupt_bz2_is_named(tmp_path, capsys):
    md5, _ = _small_usps(tmp_path / "src")
    bad = tmp_path / "src" / "usps.bz2"
    bad.write_bytes(bad.read_bytes()[:100])
    md5[1] = f"usps.bz2={file_digest(bad, 'md5')}"
    err = _refused(tmp_path, "usps", tmp_path / "src", md5, capsys)
    assert f"error: {bad.resolve()}: corrupt or truncated bz2 file" in err
