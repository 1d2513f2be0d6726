"""A job's work directory: settings fingerprint and seed, hints, start state, one file per finished window and, while
the shot is decoded to an output, one PNG per decoded frame (a job stopped while decoding decodes only what is left).

Every file is written atomically, so a run killed at any point resumes from its last finished window and produces
output bit-identical to an uninterrupted run (the carried state is stored exactly, in float32).

lvcd deletes only what it created. A work directory is marked by a ``.lvcd-work`` file (its job id, whether lvcd
created the folder, the pid of the job using it); a non-empty folder without that mark is refused, never emptied.
Clearing and removing take only lvcd's own file names, and the folder itself only when lvcd created it and nothing
else is left in it. The mark is locked (``flock``) while a job runs: a second job on the same folder is refused
with the first one's pid, and the kernel drops the lock of a killed job, so ``--resume`` is never blocked by it.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import re
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from lvcd.errors import InputError, first_line
from lvcd.io.atomic import atomic_output, recover_replaced_in, remove, remove_abandoned_in, write_json_atomic
from lvcd.io.locks import try_lock
from lvcd.sampling import CarryState
from lvcd.weights import save_safetensors

SETTINGS = "settings.json"
DECODING = "decoding.json"  # how the decoded frames kept here were decoded (lvcd.pipeline: frames, size, VAE dtype)
_DECODED = re.compile(r"decoded_(\d{6})\.png")
MARKER = ".lvcd-work"
# A shot coloured from a reference inside it keeps its pass toward frame 0 under the prefix "backward-" (WorkDir.part).
PARTS = ("backward",)
PREFIXES = ("", *(f"{part}-" for part in PARTS))  # of the state files of every pass a work directory may hold
_OWN_NAMES = re.compile(
    r"hints\.(?:npy|json)|decoding\.json|decoded_\d{6}\.png|(?:(?:"
    + "|".join(PARTS)
    + r")-)?(?:settings\.json|start\.safetensors|(?:window|carry)_\d{6}\.safetensors)"
)
_OWN_TEMPORARIES = re.compile(r"\.(?P<name>[^/]+?)\.(?:partial|replaced|creating)-[0-9a-f]{8}(?:\.[^/]*)?")


def _byte_chunks(array):
    """An array's bytes (a tensor, a numpy array, or a store that reads its own: ``byte_chunks()``), in order."""
    if hasattr(array, "byte_chunks"):
        yield from array.byte_chunks()
        return
    data = array.numpy() if isinstance(array, torch.Tensor) else array
    yield memoryview(data.reshape(-1).view("uint8")) if data.flags.c_contiguous else data.tobytes()


def finished_windows_in(folder: Path, prefix: str = "") -> int:
    """How many windows of the pass under ``prefix`` are finished in ``folder`` (window files 0, 1, ... present).
    Reads nothing but file names: safe beside a running job."""
    count = 0
    while (folder / f"{prefix}window_{count:06d}.safetensors").exists():
        count += 1
    return count


def fingerprint_with_parts(settings: dict, arrays: dict[str, list]) -> tuple[str, dict[str, str]]:
    """The sha256 of ``settings`` (sorted JSON) followed by every array's bytes in order (the job fingerprint work
    directories of every version recorded), and a short digest of each named, non-empty group of arrays, reading each
    array once (a long shot's line art is hundreds of megabytes)."""
    whole = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    parts = {}
    for name, group in arrays.items():
        part = hashlib.sha256(b"{}")  # a group's digest: its arrays after empty settings
        for array in group:
            for data in _byte_chunks(array):
                whole.update(data)
                part.update(data)
        if group:
            parts[name] = part.hexdigest()[:16]
    return whole.hexdigest(), parts


class WorkDirMismatch(InputError):
    """``--resume`` with a work directory whose job had other inputs or settings; ``differences`` says which."""

    def __init__(self, path: Path, differences: str):
        super().__init__(
            f"Work directory {path} belongs to a job with other inputs or settings ({differences}); give the same "
            "inputs and options to resume it, or run without --resume (resume=False in Python) to start afresh."
        )
        self.differences = differences


# How a job's line art was read (lvcd.shot.job_identity "line-art levels") and the option that reads it that way again.
_LEVELS_REMEDY = {
    "levelled": ("levelled", "--lineart-levels on"),
    "as drawn": ("read as drawn", "--lineart-levels off"),
}
_ABSENT = {"sampler": "euler", "vae dtype": "torch.float32"}  # lvcd.shot records these only when not the default
# Names of the settings in messages.
_LABELS = {"plan": "size (input, processing)", "config": "model config", "prev_attn_steps": "prev-reference steps"}


def differences(recorded: dict | None, current: dict[str, str]) -> str:
    """What differs between a recorded job and this one, in words (``recorded`` None: a work directory of an lvcd
    before parts were kept)."""
    if recorded is None:
        text = "this work directory does not say which: it was made by an older lvcd"
        if current.get("line-art levels") == "levelled":  # levelling scans by default came after such directories
            text += "; if its line art is a scan that lvcd now levels, --lineart-levels off reads it as that job did"
        return text
    changed = []
    # a pass from another reference frame covers other line-art frames: its line art differs by that alone
    other_pass = any(recorded.get(name) != current.get(name) for name in ("reference frame", "pass"))
    for name in sorted(set(recorded) | set(current), key=lambda n: (n != "line art", n)):
        absent = _ABSENT.get(name, "none")  # a setting left out of the record when it has its default value
        then, now = recorded.get(name, absent), current.get(name, absent)
        if then == now or name == "line-art levels" or (name == "line art" and other_pass):
            continue
        if name in ("line art", "reference", "keyframe images", "given noise"):
            text = f"the {name} differs"
            levels_then = recorded.get("line-art levels")
            if name == "line art" and levels_then in _LEVELS_REMEDY and levels_then != current.get("line-art levels"):
                text += " (it was {} then: {} reads it that way again)".format(*_LEVELS_REMEDY[levels_then])
            changed.append(text)
        else:
            changed.append(f"{_LABELS.get(name, name)} {then} then, {now} now")
    return "; ".join(changed) or "the settings file differs"


class WorkDir:
    """Open (and lock) a job's work directory; ``resume=False`` clears a previous job's files from it."""

    def __init__(self, path: str | os.PathLike, resume: bool, scratch: bool = False, option: str = "--work-dir"):
        self.path = Path(path)
        self.resume = resume
        self.scratch = scratch  # a temporary folder of a job that cannot be resumed: windows are not saved
        self.prefix = ""  # of the state files of one pass of a job (see part)
        self._lock: int | None = None
        self._no_room_for_frames = False  # the disk filled up while decoded frames were kept (save_decoded)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{option} {self.path} is a file, not a folder; give a new or empty folder.")
        marker = self.path / MARKER
        if self.path.exists() and not marker.is_file() and any(self.path.iterdir()):
            raise InputError(
                f"{option} {self.path} is not empty and is not an lvcd work directory (it has no {MARKER}); lvcd "
                "never deletes files it did not create: choose a new or empty folder."
            )
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o666)
        if not try_lock(fd):
            os.close(fd)
            pid = self._read_marker().get("pid", "unknown")
            raise InputError(
                f"Work directory {self.path} is in use: another lvcd job is already running on it (pid {pid}). "
                "Wait for it to finish, or give this job another output and work directory (--output, --work-dir; "
                "output=, work_dir= in Python)."
            )
        self._lock = fd
        mark = self._read_marker()
        mark = {"job": mark.get("job") or uuid.uuid4().hex, "created": bool(mark.get("created", created))}
        self._write_marker({**mark, "pid": os.getpid()})
        # a killed job's temporaries, swept once here (locked: no other job writes in it), not at every window file
        # saved (each sweep lists the folder: quadratic in a long shot's windows)
        recover_replaced_in(self.path)
        remove_abandoned_in(self.path)
        if not resume:
            self.clear()  # a previous job's leftovers: start afresh

    def part(self, name: str) -> WorkDir:
        """The same folder (and lock) for one pass of a job in two passes: its settings, start state, windows and carries
        under ``name-`` (one of ``PARTS``); the hints file is the whole shot's, shared. The part does not release the
        lock."""
        if name not in PARTS:
            raise ValueError(f"work directory part {name!r} is not one of {PARTS}")
        part = copy.copy(self)
        part.prefix, part._lock = f"{name}-", None
        return part

    def _file(self, name: str) -> Path:
        return self.path / f"{self.prefix}{name}"

    def _read_marker(self) -> dict:
        try:
            mark = json.loads((self.path / MARKER).read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return mark if isinstance(mark, dict) else {}

    def _write_marker(self, mark: dict) -> None:
        data = json.dumps(mark).encode()
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, data, 0)

    def own_files(self) -> list[Path]:
        """The files lvcd wrote here (and temporaries of them a killed job left), never a user's file."""
        found = []
        for path in self.path.iterdir():
            temporary = _OWN_TEMPORARIES.fullmatch(path.name)
            if _OWN_NAMES.fullmatch(path.name) or (temporary and _OWN_NAMES.fullmatch(temporary["name"])):
                found.append(path)
        return sorted(found)

    def clear(self) -> None:
        """Delete this job's state (never the mark, never a file lvcd did not write)."""
        for path in self.own_files():
            remove(path)

    def _prefixes(self) -> list[str]:
        """This part's file prefix first, then the others': every pass of a job in two passes records its settings."""
        return [self.prefix, *(p for p in PREFIXES if p != self.prefix)]

    def recorded_seed(self) -> int | None:
        """The seed the job recorded in its settings (a drawn seed is recorded too, so --resume continues it); for a
        job in two passes stopped in its first pass, that pass's."""
        for prefix in self._prefixes():
            try:
                seed = json.loads((self.path / f"{prefix}{SETTINGS}").read_text()).get("seed")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(seed, int):
                return seed
        return None

    def recorded_parts(self) -> dict[str, dict | None]:
        """The other passes' recorded settings parts (file prefix -> parts, None when unreadable) that this work
        directory holds beside this part's: a job resumed as another kind of job is refused with them."""
        found = {}
        for prefix in self._prefixes()[1:]:
            path = self.path / f"{prefix}{SETTINGS}"
            if path.exists():
                try:
                    recorded = json.loads(path.read_text())
                except (OSError, UnicodeDecodeError, ValueError):
                    recorded = None
                found[prefix] = recorded.get("parts") if isinstance(recorded, dict) else None
        return found

    def windows_on_disk(self) -> int:
        """Finished windows of every pass of the job kept here (``finished_windows`` counts this part's)."""
        return sum(finished_windows_in(self.path, prefix) for prefix in PREFIXES)

    def release(self) -> None:
        """Unlock the folder (the job is over); its files stay."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self) -> None:
        self.release()

    @property
    def hints_path(self) -> Path:
        return self.path / "hints.npy"

    def check(self, job_fingerprint: str, parts: dict[str, str] | None = None) -> bool:
        """Whether this job is recorded here (True), or nothing is (False); a record of another job is refused with
        :class:`WorkDirMismatch`, saying what differs. Writes nothing."""
        settings = self._file(SETTINGS)
        if not settings.exists():
            return False
        try:
            recorded = json.loads(settings.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            recorded = None
        if not isinstance(recorded, dict):
            raise InputError(
                f"{settings}: this job's settings cannot be read; the work directory is damaged. Run without "
                "--resume (resume=False in Python) to start afresh."
            )
        if recorded.get("fingerprint") != job_fingerprint:
            raise WorkDirMismatch(self.path, differences(recorded.get("parts"), parts or {}))
        return True

    def check_settings(self, parts: dict[str, str]) -> None:
        """Refuse with :class:`WorkDirMismatch` a record of another job whose settings, reference, keyframes or noise
        (``parts``: ``lvcd.shot.settings_identity``) differ from this one's, before the line art is read; the line art
        itself is matched by :meth:`check`. Nothing to compare (no record, or one without parts) passes."""
        try:
            recorded = json.loads(self._file(SETTINGS).read_text()).get("parts")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return  # none, or damaged: check says so once the fingerprint is known
        if not isinstance(recorded, dict):
            return
        # parts are the fingerprint's settings and array groups by name: any difference, a name only one of them has
        # included (a default left out, an empty group), is a different fingerprint too
        recorded = {name: value for name, value in recorded.items() if name not in ("line art", "line-art levels")}
        if recorded != parts:
            raise WorkDirMismatch(self.path, differences(recorded, parts))

    def bind(self, job_fingerprint: str, seed: int | None = None, parts: dict[str, str] | None = None) -> None:
        """Record this job (its seed, and ``parts``: what the fingerprint covers, for messages); when resuming, refuse
        the work directory of another job with :class:`WorkDirMismatch`, saying what differs."""
        settings = self._file(SETTINGS)
        if self.check(job_fingerprint, parts):
            return
        for stale in [*self.path.glob(f"{self.prefix}window_*"), *self.path.glob(f"{self.prefix}carry_*")]:
            stale.unlink()
        self.clear_decoded()  # another job's frames
        record = {"fingerprint": job_fingerprint, "seed": seed}
        write_json_atomic(settings, {**record, "parts": parts} if parts else record)

    def save_start(self, tensors: dict[str, torch.Tensor]) -> None:
        save_safetensors(tensors, self._file("start.safetensors"))

    def _read(self, path: Path, device="cpu") -> dict[str, torch.Tensor]:
        """A state file of this job; a damaged one (a disk error, an edit) is a one-line InputError."""
        try:
            return load_file(str(path), device=str(device))
        except Exception as err:  # noqa: BLE001 - any reader failure means an unusable file
            reason = first_line(err)
            raise InputError(
                f"{path}: this job's saved state cannot be read ({reason}); the work directory is damaged. Run without "
                "--resume (resume=False in Python) to start afresh."
            ) from None

    def load_start(self) -> dict[str, torch.Tensor] | None:
        path = self._file("start.safetensors")
        return self._read(path) if path.exists() else None

    def _window_path(self, index: int) -> Path:
        return self._file(f"window_{index:06d}.safetensors")

    def _carry_path(self, index: int) -> Path:
        return self._file(f"carry_{index:06d}.safetensors")

    def save_window(self, index: int, new_latents: torch.Tensor, state: CarryState) -> None:
        """A finished window: its new latents (``window_N``, whose existence marks it finished) and what the next
        window takes from it (``carry_N``: noise, previous latents, blending history, about 12 times the latents at
        25 steps), kept for the last finished window only. Not written for a job that cannot be resumed."""
        if self.scratch:
            return
        carry = {"noise": state.noise, "prev_latents": state.prev_latents, "blend_history": state.blend_history}
        save_safetensors(carry, self._carry_path(index), sweep=False)  # first: a finished window always has its carry
        save_safetensors({"new_latents": new_latents}, self._window_path(index), sweep=False)
        if index > 0:
            self._carry_path(index - 1).unlink(missing_ok=True)

    def finished_windows(self) -> int:
        return finished_windows_in(self.path, self.prefix)

    def load_window(self, index: int, device) -> torch.Tensor:
        """A finished window's new latents."""
        path = self._window_path(index)
        data = self._read(path, device)
        if "new_latents" not in data:
            raise InputError(
                f"{path}: this job's saved state lacks its latents; run without --resume (resume=False in Python) to "
                "start afresh."
            )
        return data["new_latents"]

    def load_carry(self, index: int, device) -> CarryState:
        """What window ``index`` passed on to the next: its own file (in work directories written before carries had
        their own files, the window file itself)."""
        path = self._carry_path(index)
        data = self._read(path if path.exists() else self._window_path(index), device)
        if "noise" not in data:
            raise InputError(
                f"{path}: this job's saved state lacks what window {index} passed on; run without --resume "
                "(resume=False in Python) to start afresh."
            )
        return CarryState(data["noise"], data.get("prev_latents"), data.get("blend_history"))

    def _decoded_files(self) -> dict[int, Path]:
        return {int(m[1]): p for p in self.path.iterdir() if (m := _DECODED.fullmatch(p.name))}

    def decoded_frames(self, decoding: dict) -> set[int]:
        """The frames of this job decoded before it stopped, when they were decoded as ``decoding`` says (frame count,
        size, VAE dtype); frames decoded otherwise are deleted and ``decoding`` recorded. Nothing is kept for a job
        that cannot be resumed."""
        if self.scratch:
            return set()
        try:
            recorded = json.loads((self.path / DECODING).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            recorded = None
        if recorded != decoding:
            self.clear_decoded()
            write_json_atomic(self.path / DECODING, decoding)
            return set()
        return {index for index in self._decoded_files() if index < decoding["frames"]}

    def save_decoded(self, index: int, frame: np.ndarray) -> bool:
        """Keep decoded frame ``index`` (HxWx3 uint8, as the output gets it), losslessly (not for a scratch directory).
        Only while the disk has room: a full disk deletes the frames kept so far (the output needs the room more)
        and none are kept from then on; returns whether it was kept."""
        if self.scratch or self._no_room_for_frames:
            return False
        try:
            with atomic_output(self.path / f"decoded_{index:06d}.png", sweep=False) as temporary:
                Image.fromarray(frame).save(temporary, format="PNG", compress_level=1)  # fast: kept only until the end
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._no_room_for_frames = True
            self.clear_decoded()
            return False
        return True

    def load_decoded(self, index: int, size_hw: tuple[int, int]) -> np.ndarray:
        """Decoded frame ``index`` as saved (HxWx3 uint8); a damaged one is a one-line InputError."""
        path = self.path / f"decoded_{index:06d}.png"
        try:
            with Image.open(path) as image:
                frame = np.asarray(image)
        except Exception as err:  # noqa: BLE001 - any reader failure means an unusable file
            reason = first_line(err)
            frame = None
        else:
            reason = f"a {'x'.join(map(str, frame.shape))} {frame.dtype} image, not {size_hw[1]}x{size_hw[0]} RGB"
        if frame is None or frame.shape != (*size_hw, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"{path}: this job's decoded frame cannot be read ({reason}); the work directory is damaged. Delete "
                "that file and resume again (it is decoded again), or run without --resume to start afresh."
            )
        return frame

    def decoded_on_disk(self) -> int:
        """Decoded frames kept here (reads nothing but file names)."""
        return len(self._decoded_files()) if self.path.is_dir() else 0

    def clear_decoded(self) -> None:
        """Delete the decoded frames and their record (after the output is written, or for another job)."""
        for path in [*self._decoded_files().values(), self.path / DECODING]:
            remove(path)

    def remove(self) -> None:
        """After success: delete lvcd's files, then the folder if lvcd created it and nothing else is in it."""
        created = self._read_marker().get("created", False)
        self.clear()
        (self.path / MARKER).unlink(missing_ok=True)
        self.release()
        if created:
            try:
                self.path.rmdir()
            except OSError:
                pass  # the user put something in it: keep it
