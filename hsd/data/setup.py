"""``hsd data`` (``make data``): put the prepared dataset into the data directory.

Links (default) or copies ``<source>/unified`` and ``<source>/canned`` into the data
directory (``--dest``, else ``$HSD_DATA_DIR``, else ``./data``). The default source is
``../shared/data`` beside the source checkout (when hsd runs from one), else beside the working
directory. Safe to rerun: an existing link to the same place is kept, and nothing that is not a
broken link made earlier is ever replaced.

Exit codes: 0 when the data directory holds the splits afterwards (linked now or already
there); 1 when there is nothing to link and no data in place -- the message says what to do.
``tests/run_all.sh`` tolerates 1 so ``make test`` still runs (data-dependent tests skip with a
reason). An explicit ``--source`` that does not exist is an error (exit 2).
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path
from typing import Optional

from hsd.data.loader import SPLITS, split_path
from hsd.errors import DataError
from hsd.paths import checkout_root

ITEMS = ("unified", "canned")


def default_sources() -> list[Path]:
    """``../shared/data`` beside the source checkout (none for an installed hsd), then beside the cwd."""
    root = checkout_root()
    beside_checkout = [root.parent / "shared" / "data"] if root is not None else []
    return beside_checkout + [Path.cwd().resolve().parent / "shared" / "data"]


def find_source(explicit: Optional[str]) -> Optional[Path]:
    if explicit is not None:
        source = Path(explicit)
        if not (source / "unified").is_dir():
            raise DataError(f"--source {source}: no 'unified' directory there; pass the folder that holds unified/ and canned/")
        return source
    return next((p for p in default_sources() if (p / "unified").is_dir()), None)


def has_splits(data_dir: Path) -> bool:
    return all(split_path(data_dir, s).is_file() for s in SPLITS)


def link_item(src: Path, dst: Path) -> str:
    """A relative symlink ``dst -> src`` (so the repo and shared/ can move together)."""
    if dst.is_symlink():
        if dst.exists() and dst.resolve() == src.resolve():
            return "already linked"
        if dst.exists():
            return f"left as is: it links to {os.readlink(dst)} (remove the link to relink)"
        dst.unlink()  # a broken link is never user data
        os.symlink(os.path.relpath(src, dst.parent), dst)
        return f"relinked -> {os.readlink(dst)} (the old link was broken)"
    if dst.exists():
        return "left as is: it exists and is not a link made by hsd data"
    os.symlink(os.path.relpath(src, dst.parent), dst)
    return f"linked -> {os.readlink(dst)}"


def copy_item(src: Path, dst: Path) -> str:
    """Copy files that are missing; a file that exists with other content is kept and reported."""
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        return "left as is: it exists and is not a directory (remove it to copy)"
    copied, same, differ = 0, 0, []
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / file.relative_to(src)
        if target.exists():
            if filecmp.cmp(file, target, shallow=False):
                same += 1
            else:
                differ.append(target.name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)  # not copy2: keep the copy writable even if shared is read-only
        copied += 1
    kept = f", {len(differ)} differ and were kept: {', '.join(differ)}" if differ else ""
    return f"copied {copied} files, {same} already identical{kept}"


def missing_message(dest: Path) -> str:
    tried = "\n".join(f"  {p}" for p in default_sources())
    return (
        "hsd data: no prepared dataset found. Looked for <source>/unified in:\n"
        f"{tried}\n"
        "To fix, do one of:\n"
        f"  - place unified_train.json, unified_val.json, unified_test.json under {dest / 'unified'}/\n"
        "    (and any named subsets under canned/), or\n"
        "  - run `hsd data --source DIR` with DIR holding unified/ and canned/, or\n"
        "  - set HSD_DATA_DIR to a directory that already holds them."
    )
