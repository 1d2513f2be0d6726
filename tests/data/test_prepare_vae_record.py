"""`lvcd data prepare` records the VAE of a root's latents and refuses another one in a shard or a resume."""

from __future__ import annotations

import json

from safetensors import safe_open
from safetensors.torch import save_file

from .test_cli import invoke, prepare_args


def other_vae(svd, path):
    """The tiny svd file with one encoder tensor changed: another VAE, same config."""
    with safe_open(str(svd), "pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        metadata = f.metadata()
    key = next(k for k in sorted(tensors) if k.startswith("first_stage_model.encoder.") and k.endswith("bias"))
    tensors[key] = tensors[key] + 0.5
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_a_shard_or_resume_with_another_vae_is_refused_before_any_work(tmp_path, synthetic_mp4, tiny_weights):
    root = tmp_path / "root"
    svd = tiny_weights["svd"]
    other = other_vae(svd, tmp_path / "other.safetensors")
    head, tail = prepare_args(synthetic_mp4, root, svd)
    first = invoke(*head, *tail, "--shard", "0", "--num-shards", "2")
    assert first.exit_code == 0, first.output
    recorded = json.loads((root / "lvcd_data.json").read_text())["vae"]
    assert set(recorded) == {"encoder_sha256", "scale_factor"}
    before = sorted(p.relative_to(root) for p in root.rglob("*"))

    other_head, _ = prepare_args(synthetic_mp4, root, other)
    refused = invoke(*other_head, *tail, "--shard", "1", "--num-shards", "2")
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip()
    assert "\n" not in line and "holds latents of another VAE" in line and "--svd it was prepared with" in line
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written
    resumed_other = invoke(*other_head, *tail, "--shard", "0", "--num-shards", "2")
    assert resumed_other.exit_code == 2 and "another VAE" in resumed_other.output

    # the same VAE under another path is the same VAE
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(svd.read_bytes())
    copy_head, _ = prepare_args(synthetic_mp4, root, copy)
    second = invoke(*copy_head, *tail, "--shard", "1", "--num-shards", "2")
    assert second.exit_code == 0, second.output


def test_a_root_of_an_earlier_version_records_the_vae_of_its_next_run(tmp_path, synthetic_mp4, tiny_weights):
    root = tmp_path / "root"
    svd = tiny_weights["svd"]
    head, tail = prepare_args(synthetic_mp4, root, svd)
    first = invoke(*head, *tail, "--shard", "0", "--num-shards", "2")
    assert first.exit_code == 0, first.output
    meta_path = root / "lvcd_data.json"
    meta = json.loads(meta_path.read_text())
    del meta["vae"]  # as earlier versions wrote it
    meta_path.write_text(json.dumps(meta))

    second = invoke(*head, *tail, "--shard", "1", "--num-shards", "2")
    assert second.exit_code == 0, second.output
    assert "records no VAE" in second.output
    assert "vae" in json.loads(meta_path.read_text())
    other_head, _ = prepare_args(synthetic_mp4, root, other_vae(svd, tmp_path / "other.safetensors"))
    refused = invoke(*other_head, *tail)
    assert refused.exit_code == 2 and "another VAE" in refused.output


_HOLD_AND_RECORD = """
import dataclasses, os, sys, time
from pathlib import Path
from lvcd.data import prepare
root, svd, release = sys.argv[1], sys.argv[2], sys.argv[3]
check = prepare.check_or_record_vae

def slow_check(*args):  # a shard in the middle of recording its VAE: the other shard must wait for it
    print("holding", flush=True)
    while not os.path.exists(release):
        time.sleep(0.02)
    return check(*args)

prepare.check_or_record_vae = slow_check
options = dataclasses.replace(prepare.PrepareOptions(), vae=prepare.vae_record(svd, 0.18215))
prepare.claim_root(Path(root), options)
print("recorded", flush=True)
"""


def test_two_shards_started_together_with_different_vaes_cannot_both_record(tmp_path, tiny_weights):
    """Both found no record and both ran, the last one's VAE recorded over 37 of 75 latents of the other (found by
    review, 71 of 100 simultaneous starts): the root's records are now checked and written one shard at a time."""
    import dataclasses
    import subprocess
    import sys
    import threading

    from lvcd.data.prepare import PrepareOptions, claim_root, vae_record
    from lvcd.errors import InputError

    root, release = tmp_path / "root", tmp_path / "release"
    other = other_vae(tiny_weights["svd"], tmp_path / "other.safetensors")
    first = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_RECORD, str(root), str(tiny_weights["svd"]), str(release)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "holding"
        outcome: dict = {}

        def second_shard() -> None:
            try:
                claim_root(root, dataclasses.replace(PrepareOptions(), vae=vae_record(other, 0.18215)))
                outcome["ran"] = True
            except InputError as err:
                outcome["refused"] = str(err)

        thread = threading.Thread(target=second_shard)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and not outcome  # it waits for the first shard's records
        release.touch()
        assert first.stdout.readline().strip() == "recorded"
        thread.join(30)
        assert "holds latents of another VAE" in outcome.get("refused", ""), outcome
    finally:
        release.touch()
        first.kill()
        first.wait()
