"""A world of inputs for the reliability suite, shared by its tests: line art, references, weights, configs, and
the hostile things (a folder of user files, a file where a folder belongs, a truncated video), with checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.testing.drawings import draw_ring_shot


def checksums(root: Path, whole_below: int = 1 << 20) -> dict[str, object]:
    """Every file under ``root`` (relative path -> fingerprint) and every folder. Files under ``whole_below`` bytes are
    hashed (sha256); larger ones (the 130 MB of tiny weights) are fingerprinted by inode, size, mtime and ctime, which
    any write, replacement or truncation changes (ctime cannot be set back), and hashed whole by ``checksums(root, 0)``
    once at the end of a module."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            if whole_below and info.st_size >= whole_below:
                found[str(path.relative_to(root))] = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            else:
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            found[str(path.relative_to(root)) + "/"] = "folder"
    return found


def draw_shot(folder: Path, count: int, size_hw=(64, 128)) -> None:
    """Dark-lines drawings of a moving ring."""
    draw_ring_shot(folder, count, size_hw)


def colour_image(path: Path, size_hw=(64, 128), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size_hw, 3), dtype=np.uint8)).save(path)
    return path


@dataclass
class World:
    inputs: Path  # everything a command reads; checksummed before and after every case
    out: Path  # where outputs go (a separate folder, so leftovers are easy to see)
    weights: dict[str, Path]

    def __getattr__(self, name: str) -> Path:  # world.reference -> inputs/reference.png etc.
        return self.__dict__["paths"][name]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` (no pixel data: Pillow refuses such sizes on opening)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory, tiny_weights) -> World:
    root = tmp_path_factory.mktemp("world")
    inputs, out = root / "inputs", root / "out"
    inputs.mkdir()
    out.mkdir()
    paths = {}
    paths["lineart"] = inputs / "lineart"
    draw_shot(paths["lineart"], 4)
    paths["reference"] = colour_image(inputs / "reference.png")
    paths["keyframe"] = colour_image(inputs / "key.png", seed=1)
    paths["wide"] = colour_image(inputs / "wide.png", size_hw=(64, 256), seed=2)
    paths["svd"] = inputs / "tiny_svd.safetensors"
    paths["lvcd"] = inputs / "tiny_lvcd.ckpt"
    shutil.copyfile(tiny_weights["svd"], paths["svd"])
    shutil.copyfile(tiny_weights["lvcd"], paths["lvcd"])
    paths["config"] = inputs / "tiny_config.json"
    shutil.copyfile(TINY_CONFIG, paths["config"])
    paths["bad_json"] = inputs / "broken.json"
    paths["bad_json"].write_text('{"model": {"params": ')
    paths["not_image"] = inputs / "notes.png"
    paths["not_image"].write_text("not an image")
    paths["empty"] = inputs / "empty"
    paths["empty"].mkdir()
    paths["mixed"] = inputs / "mixed"
    draw_shot(paths["mixed"], 3)
    Image.new("L", (100, 64), 255).save(paths["mixed"] / "f999.png")
    paths["user_dir"] = inputs / "project"  # a folder of user files that looks like an old work directory
    paths["user_dir"].mkdir()
    (paths["user_dir"] / "settings.json").write_text('{"mine": true}')
    (paths["user_dir"] / "scene.blend").write_bytes(b"user data")
    paths["a_file"] = inputs / "a_file"
    paths["a_file"].write_text("a file where a folder is expected")
    from lvcd.testing.faults import truncated_mp4

    paths["truncated"] = truncated_mp4(inputs / "cut.mp4", frames=40, keep=0.4)
    paths["short_shot"] = inputs / "short_shot"  # 10 frames: no 15-frame training clip
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "data" / "shot", paths["short_shot"])
    for extra in sorted(paths["short_shot"].iterdir())[10:]:
        extra.unlink()
    paths["toml"] = inputs / "train.toml"
    paths["toml"].write_text("[train\nmax_steps = ")
    paths["huge"] = inputs / "huge"  # one 7000x6000 frame: 42 megapixels, over the stated limit
    paths["huge"].mkdir()
    Image.new("L", (7000, 6000), 255).save(paths["huge"] / "f0.png")
    paths["hardlink"] = inputs / "hardlink_to_reference.png"
    os.link(paths["reference"], paths["hardlink"])
    paths["cut_reference"] = inputs / "cut_reference.png"  # its second half lost: the header reads, the pixels do not
    paths["cut_reference"].write_bytes(paths["reference"].read_bytes()[: paths["reference"].stat().st_size // 2])
    paths["big_reference"] = png_header_only(inputs / "big_reference.png", 8000, 6000)  # 48 MP: under the bomb limit
    paths["bomb"] = png_header_only(inputs / "bomb.png", 20000, 10000)  # 200 megapixels: Pillow's bomb limit
    paths["dangling_output"] = (
        out / "dangling_output"
    )  # a link to a folder that does not exist (writing would create it)
    paths["dangling_output"].symlink_to(root / "elsewhere" / "dir")
    paths["loop"] = out / "loop"  # a link to itself
    paths["loop"].symlink_to("loop")
    world = World(inputs, out, {"svd": paths["svd"], "lvcd": paths["lvcd"]})
    world.__dict__["paths"] = paths
    return world


def can_mount() -> str | None:
    """None when this process may mount a tmpfs, else why not (the reason a test is skipped with)."""
    if os.geteuid() != 0:
        return "mounting a small or read-only file system needs root"
    probe = Path(f"/tmp/lvcd-mount-probe-{uuid.uuid4().hex[:8]}")
    probe.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
        if done.returncode != 0:
            return f"mount is not permitted here ({done.stderr.decode().strip()})"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        probe.rmdir()


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small tmpfs mounted at ``path`` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
