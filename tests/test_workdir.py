"""lvcd.workdir.WorkDir: deletes only what lvcd created, locks against a second job, records the seed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from lvcd.errors import InputError
from lvcd.workdir import MARKER, WorkDir


def test_a_folder_of_user_files_is_refused_and_left_untouched(tmp_path):
    user = tmp_path / "project"
    user.mkdir()
    (user / "settings.json").write_text("{}")  # looks like an old work dir: still the user's
    (user / "notes.txt").write_text("mine")
    for resume in (False, True):
        with pytest.raises(InputError, match=r"project is not empty and is not an lvcd work directory"):
            WorkDir(user, resume=resume)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "settings.json"]
    assert (user / "settings.json").read_text() == "{}"


def test_removal_takes_only_lvcds_files_and_only_a_folder_lvcd_made(tmp_path):
    given = tmp_path / "given"  # an empty folder the user made: used, emptied of lvcd's files, kept
    given.mkdir()
    work = WorkDir(given, resume=False)
    work.bind("abc", seed=5)
    (given / "window_000000.safetensors").write_bytes(b"x")
    (given / ".window_000001.safetensors.partial-0123abcd.safetensors").write_bytes(b"x")  # a killed writer's
    work.remove()
    assert given.is_dir() and list(given.iterdir()) == []

    made = tmp_path / "made"
    work = WorkDir(made, resume=False)
    work.bind("abc")
    (made / "later.txt").write_text("the user's, added during the run")
    work.remove()
    assert [p.name for p in made.iterdir()] == ["later.txt"]
    made2 = tmp_path / "made2"
    work = WorkDir(made2, resume=False)
    work.bind("abc")
    work.remove()
    assert not made2.exists()


def test_a_fresh_run_clears_the_previous_jobs_state_but_resume_keeps_it(tmp_path):
    work = WorkDir(tmp_path / "w", resume=False)
    work.bind("job-1", seed=77)
    (work.path / "window_000000.safetensors").write_bytes(b"x")
    work.release()
    again = WorkDir(tmp_path / "w", resume=True)
    assert again.recorded_seed() == 77 and again.finished_windows() == 1
    again.release()
    fresh = WorkDir(tmp_path / "w", resume=False)
    assert fresh.recorded_seed() is None and fresh.finished_windows() == 0 and (fresh.path / MARKER).is_file()
    fresh.release()


def test_a_second_job_on_the_same_folder_is_refused_with_the_first_ones_pid(tmp_path):
    holder = textwrap.dedent(
        f"""
        import sys, time
        from lvcd.workdir import WorkDir
        work = WorkDir({str(tmp_path / "w")!r}, resume=False)
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"already running on it \(pid {process.pid}\)"):
            WorkDir(tmp_path / "w", resume=True)
    finally:
        process.communicate("")
    WorkDir(tmp_path / "w", resume=True).release()  # the lock died with its job: resume is never blocked


def test_a_damaged_state_file_is_a_one_line_error_saying_how_to_start_afresh(tmp_path):
    work = WorkDir(tmp_path / "w", resume=False)
    (work.path / "window_000000.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{truncated")
    with pytest.raises(
        InputError, match=r"window_000000.safetensors: this job's saved state cannot be read \("
    ) as caught:
        work.load_window(0, "cpu")
    assert "\n" not in str(caught.value) and str(caught.value).endswith(
        "Run without --resume (resume=False in Python) to start afresh."
    )
    (work.path / "start.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="start.safetensors: this job's saved state cannot be read"):
        work.load_start()
    work.release()


def test_a_damaged_settings_file_is_a_one_line_error_too(tmp_path):
    work = WorkDir(tmp_path / "w", resume=True)
    (work.path / "settings.json").write_text("{not json")
    with pytest.raises(InputError, match=r"settings.json: this job's settings cannot be read; .*start afresh"):
        work.bind("f" * 64, 0)
    work.release()


def test_the_messages_name_an_unrecorded_default_setting_by_its_value():
    from lvcd.workdir import differences

    assert differences({"sampler": "heun", "seed": "1"}, {"seed": "1"}) == "sampler heun then, euler now"


def test_only_the_last_finished_window_keeps_what_it_passes_on(tmp_path):
    """Every window file held the carry (19 frames of noise, 4 previous latents, steps x 4 of blending history: 12
    times its own latents at 25 steps; 4.3 MB per frame of a shot at 576x1024). Now a window file holds its latents,
    and only the last finished window's carry is kept; work directories of earlier versions still resume."""
    from lvcd.sampling import CarryState

    work = WorkDir(tmp_path / "w", resume=False)
    carries = [CarryState(torch.full((19, 4, 2, 2), float(i)), torch.ones(4, 4, 2, 2) * i, torch.zeros(100, 4, 2, 2))
               for i in range(3)]  # fmt: skip
    for index, carry in enumerate(carries):
        work.save_window(index, torch.full((10, 4, 2, 2), float(index)), carry)
    names = sorted(p.name for p in work.path.iterdir() if p.suffix == ".safetensors")
    assert names == ["carry_000002.safetensors", *(f"window_{i:06d}.safetensors" for i in range(3))]
    assert work.finished_windows() == 3 and torch.equal(work.load_window(1, "cpu"), torch.full((10, 4, 2, 2), 1.0))
    loaded = work.load_carry(2, "cpu")
    assert torch.equal(loaded.noise, carries[2].noise) and torch.equal(loaded.blend_history, carries[2].blend_history)
    # a work directory of an earlier version: the carry inside each window file
    save_file({"new_latents": torch.zeros(10, 4, 2, 2), "noise": torch.full((19, 4, 2, 2), 7.0)},
              str(work.path / "window_000003.safetensors"))  # fmt: skip
    assert torch.equal(work.load_carry(3, "cpu").noise, torch.full((19, 4, 2, 2), 7.0))
    work.clear()
    assert not any(p.suffix == ".safetensors" for p in work.path.iterdir())
    work.release()
    scratch = WorkDir(tmp_path / "s", resume=False, scratch=True)  # a job that cannot be resumed writes no windows
    scratch.save_window(0, torch.zeros(10, 4, 2, 2), carries[0])
    assert scratch.finished_windows() == 0 and not list(scratch.path.glob("*.safetensors"))
    scratch.release()


def test_a_killed_jobs_temporaries_are_swept_once_when_the_folder_is_opened_not_at_every_window(tmp_path, monkeypatch):
    """Each window saved listed the whole work directory twice (for a killed writer's temporaries): quadratic in a
    long shot's windows (18.6 ms a window with 3000 on disk). The folder is swept once, when a job opens it."""
    from lvcd.io import atomic
    from lvcd.sampling import CarryState

    work = WorkDir(tmp_path / "w", resume=False)
    work.release()
    leftover = work.path / ".window_000001.safetensors.partial-0123abcd.safetensors"  # a killed writer's temporary
    leftover.write_bytes(b"x")
    listings = []
    for name in ("remove_abandoned_temporaries", "recover_replaced"):
        real = getattr(atomic, name)
        monkeypatch.setattr(
            atomic, name, lambda *args, _real=real, **kwargs: listings.append(1) or _real(*args, **kwargs)
        )
    work = WorkDir(tmp_path / "w", resume=True)
    assert not leftover.exists()
    carry = CarryState(torch.zeros(19, 4, 2, 2), torch.zeros(4, 4, 2, 2), torch.zeros(10, 4, 2, 2))
    for index in range(5):
        work.save_window(index, torch.zeros(10, 4, 2, 2), carry)
    assert listings == [] and work.finished_windows() == 5
    work.release()


def test_ctrl_c_before_the_first_window_does_not_speak_of_finished_windows(tmp_path):
    """It said "the finished windows are kept in .out.mp4.lvcd-work" when none had finished."""
    from lvcd.cli.jobs import run_job
    from lvcd.errors import Interrupted
    from lvcd.sampling import CarryState

    def stopped():
        raise KeyboardInterrupt

    work = WorkDir(tmp_path / "early", resume=False)
    with pytest.raises(Interrupted, match=r"no window had finished; the job's set-up is kept in .*early: run the same"):
        run_job(work, 7, stopped)
    work = WorkDir(tmp_path / "later", resume=False)
    carry = CarryState(torch.zeros(19, 4, 2, 2), torch.zeros(4, 4, 2, 2), torch.zeros(10, 4, 2, 2))
    work.save_window(0, torch.zeros(10, 4, 2, 2), carry)
    with pytest.raises(
        Interrupted, match=r"the finished windows are kept in .*later: run the same command with --resume"
    ):
        run_job(work, 7, stopped)
    assert WorkDir(tmp_path / "later", resume=True).finished_windows() == 1


def test_resume_with_another_seed_is_refused_before_the_weights_load(tmp_path):
    """--resume with a --seed other than the interrupted job's was refused only after the weights had loaded (minutes
    with the official files)."""
    from lvcd.cli.jobs import open_job

    work = WorkDir(tmp_path / "w", resume=False)
    (work.path / "settings.json").write_text('{"seed": 5}')
    work.release()
    with pytest.raises(
        InputError, match=r"--seed 6 differs from the seed of the interrupted job .* \(5\); give --seed 5"
    ):
        open_job(tmp_path / "w", True, 6)
    work, seed = open_job(tmp_path / "w", True, 5)  # the same seed, or none, resumes (the lock was released)
    assert seed == 5
    work.release()
    work, seed = open_job(tmp_path / "w", True, None)
    assert seed == 5
    work.release()


def test_decoded_frames_are_kept_only_for_the_same_decoding_and_the_same_job(tmp_path):
    """A stopped job's decoded frames come back losslessly when resumed with the same decoding (frames, size, VAE
    dtype); other decoding, another job or a fresh run deletes them; a scratch directory keeps none."""
    import numpy as np

    decoding = {"frames": 3, "size": [4, 6], "vae dtype": "torch.float32"}
    frame = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    work = WorkDir(tmp_path / "w", resume=False)
    assert work.decoded_frames(decoding) == set()
    work.save_decoded(0, frame)
    work.save_decoded(2, frame[::-1].copy())
    work.release()
    work = WorkDir(tmp_path / "w", resume=True)
    assert work.decoded_frames(decoding) == {0, 2} and work.decoded_on_disk() == 2
    assert np.array_equal(work.load_decoded(0, (4, 6)), frame)
    assert np.array_equal(work.load_decoded(2, (4, 6)), frame[::-1])
    assert work.decoded_frames({**decoding, "vae dtype": "torch.bfloat16"}) == set()  # decoded otherwise: gone
    assert work.decoded_on_disk() == 0
    work.save_decoded(1, frame)
    work.bind("another job", seed=1)  # a new job's record deletes the frames of the one before
    assert work.decoded_on_disk() == 0 and not (work.path / "decoding.json").exists()
    work.save_decoded(1, frame)
    work.release()
    work = WorkDir(tmp_path / "w", resume=False)  # a fresh run
    assert work.decoded_on_disk() == 0 and [p.name for p in work.path.iterdir()] == [MARKER]
    work.release()
    scratch = WorkDir(tmp_path / "s", resume=False, scratch=True)
    assert scratch.decoded_frames(decoding) == set()
    scratch.save_decoded(0, frame)
    assert scratch.decoded_on_disk() == 0 and not (scratch.path / "decoding.json").exists()


def test_a_damaged_decoded_frame_is_a_one_line_error_saying_what_to_do(tmp_path):
    import numpy as np

    work = WorkDir(tmp_path / "w", resume=False)
    work.decoded_frames({"frames": 2, "size": [4, 6], "vae dtype": "torch.float32"})
    (work.path / "decoded_000000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match=r"decoded_000000.png: this job's decoded frame cannot be read .*Delete that"):
        work.load_decoded(0, (4, 6))
    work.save_decoded(1, np.zeros((4, 7, 3), np.uint8))
    with pytest.raises(InputError, match=r"\(a 4x7x3 uint8 image, not 6x4 RGB\)") as caught:
        work.load_decoded(1, (4, 6))
    assert "\n" not in str(caught.value)


def test_ctrl_c_while_decoding_says_the_decoded_frames_are_kept(tmp_path):
    import numpy as np

    from lvcd.cli.jobs import run_job
    from lvcd.errors import Interrupted
    from lvcd.sampling import CarryState

    def stopped():
        raise KeyboardInterrupt

    work = WorkDir(tmp_path / "w", resume=False)
    work.save_window(0, torch.zeros(10, 4, 2, 2), CarryState(torch.zeros(19, 4, 2, 2), None, None))
    work.decoded_frames({"frames": 9, "size": [4, 6], "vae dtype": "torch.float32"})
    for index in range(7):
        work.save_decoded(index, np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(Interrupted, match=r"the finished windows and 7 decoded frames are kept in .*w: run the same"):
        run_job(work, 7, stopped)
