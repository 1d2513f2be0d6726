"""``lvcd data synth`` with several worker processes writes exactly what one process writes (frames, line art,
labels, latents, index), and resumes a half-written root."""

from __future__ import annotations

import pytest

from lvcd.data.synth_set import write_synthetic_set
from lvcd.errors import InputError

SIZE = (32, 32)


def _files(root):
    return {path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_workers_write_the_same_bytes_as_one_process(tmp_path, tiny_vae):
    one = write_synthetic_set(tmp_path / "one", shots=5, num_frames=15, size_hw=SIZE, vae=tiny_vae, progress=False)
    many = write_synthetic_set(
        tmp_path / "many", shots=5, num_frames=15, size_hw=SIZE, vae=tiny_vae, progress=False, workers=3
    )
    assert (one.written, one.latents_written) == (many.written, many.latents_written) == (5, 75)
    files_one, files_many = _files(tmp_path / "one"), _files(tmp_path / "many")
    assert len(files_one) == 5 * 15 * 4 + 3  # frame, line art, label, latent per frame; meta, index, encoder record
    assert files_one == files_many


def test_workers_extend_and_resume_a_root(tmp_path):
    root = tmp_path / "root"
    write_synthetic_set(root, shots=2, num_frames=15, size_hw=SIZE, progress=False)
    (root / "img_32" / "train_0000001" / "000007.png").unlink()  # a shot cut short by a killed run
    report = write_synthetic_set(root, shots=4, num_frames=15, size_hw=SIZE, progress=False, workers=2)
    assert (report.skipped, report.written, report.shots) == (1, 3, 4)
    write_synthetic_set(tmp_path / "ref", shots=4, num_frames=15, size_hw=SIZE, progress=False)
    assert _files(root) == _files(tmp_path / "ref")


def test_workers_below_one_are_refused(tmp_path):
    with pytest.raises(InputError, match="--workers 0"):
        write_synthetic_set(tmp_path / "root", shots=2, num_frames=15, size_hw=SIZE, progress=False, workers=0)
    assert not (tmp_path / "root").exists()
