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
    rc = datasets.main(
        [name, "--out", str(out), "--manifest", str(manifest), "--cache-dir", str(tmp / "cache")]
        + list(extra)
    )
    return rc, out, manifest


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory, fmnist_dir):
    tmp = tmp_path_factory.mktemp("fmnist")
    rc, out, manifest = _prepare(tmp, "fmnist", "--local-dir", str(fmnist_dir), "--no-download")
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
    # and it is another resize than the default: stripes of period 2 pixels, finer than the
    # 16×16 grid can hold, average to grey with antialiasing and alias to a false wave without
    default = dataset_prep.to_16x16(images)
    assert (ours - default).abs().mean() > 0.05
    assert default[0].std() < 0.05 and ours[0].std() > 0.25


def test_default_resize_is_the_output_before_the_option():
    images = _images(seed=1)
    assert torch.equal(dataset_prep.to_16x16(images), _old_to_16x16(images))
    assert torch.equal(dataset_prep.to_16x16(images, "antialias"), _old_to_16x16(images))
    # native 16×16 images are only scaled to [0, 1], whatever the mode
    small = images[:, :16, :16]
    assert torch.equal(dataset_prep.to_16x16(small, "reference"), dataset_prep.to_16x16(small))


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
    assert cfg["datasets"]["fmnist"]["resize"] == "antialias"
    assert plan.datasets_args(cfg, "fmnist").endswith("--resize antialias")
    cfg = validate_config({"datasets": {"fmnist": {"resize": "reference"}}})
    assert plan.datasets_args(cfg, "fmnist").endswith("--resize reference")
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
    # another dataset than the default's, but the same images and labels
    default, _ = fmnist
    assert torch.equal(data["train_y"], default["train_y"])
    assert (data["train_x"] - default["train_x"]).abs().mean() > 0.05


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
