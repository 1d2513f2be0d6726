"""A training root's bookkeeping: taking back what a failed first run wrote into it, and its merged clip index."""

from __future__ import annotations

import contextlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lvcd.data.layout import DatasetLayout, merge_shard_indexes
from lvcd.errors import InputError
from lvcd.io.atomic import write_bytes_atomic


class FreshRoot:
    """What a run wrote into a root that held nothing of lvcd's before it, so a failure can take it back. Shards of
    one root may run side by side: only this run's own files go, and the root's record only when no other shard has
    written to the root."""

    def __init__(self, root: Path, layout: DatasetLayout):
        self.root, self.layout = root, layout
        self.root_created = not root.exists()
        self.fresh = self.root_created or not layout.meta_path.exists()
        self.folders = [p for p in (layout.scenes_dir,) if not p.exists()]
        self.written: list[Path] = []  # the scene caches this run wrote
        self.wrote_meta = False
        root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def undone_on_error(self):
        try:
            yield
        except BaseException:
            if self.fresh:
                self.undo()
            raise

    def undo(self) -> None:
        """Delete the files this run wrote (its scene caches; the root's record when nothing else is in the root) and
        the folders it made, when empty."""
        for path in self.written:
            path.unlink(missing_ok=True)
        for folder in self.folders:
            with contextlib.suppress(OSError):
                folder.rmdir()  # another shard's caches in it: keep it
        layout = self.layout
        written_by_others = (layout.shard_index_dir, layout.image_dir, layout.sketch_dir, layout.latent_dir)
        others = any(layout.scenes_dir.glob("*.json")) or any(folder.exists() for folder in written_by_others)
        if self.wrote_meta and not others:  # else another shard of this root is at work and relies on it
            self.layout.meta_path.unlink(missing_ok=True)
        if self.root_created:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # something else is in it: keep it


def write_json_if_changed(path: Path, document: Any) -> None:
    data = (json.dumps(document, indent=1) + "\n").encode()
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes_atomic(path, data)


def write_index(root: str | Path, allow_partial: bool = False) -> tuple[Path, int, int]:
    """Merge the shard indexes of a root into ``train_clips_hist.json``: (path, clips written, clips missing)."""
    root = Path(root)
    if not (root / "index").is_dir():
        raise InputError(f"{root} has no shard indexes (index/): run `lvcd data prepare` into it first.")
    merged, missing = merge_shard_indexes(root, allow_partial=allow_partial)
    if missing and not allow_partial:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise InputError(
            f"{len(missing)} clip(s) of {root} are not prepared yet ({shown}): run the remaining shards of "
            "`lvcd data prepare`, or pass --allow-partial to index what is there."
        )
    path = DatasetLayout(root).index_path()
    write_json_if_changed(path, merged)
    return path, len(merged), len(missing)
