"""``hsd data [--source DIR] [--dest DIR] [--copy]``: put the prepared dataset where hsd reads it.

Links (or copies) ``unified/`` and ``canned/`` from ``--source`` (default ``../shared/data``)
into the data directory (``--dest``, else ``$HSD_DATA_DIR``, else ``./data``); the helpers are
:mod:`hsd.data.setup`'s. Exit 1 when the splits are still incomplete.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from hsd.data.loader import SPLITS, resolve_data_dir
from hsd.data.setup import ITEMS, copy_item, find_source, has_splits, link_item, missing_message
from hsd.errors import DataError


def main(args: argparse.Namespace) -> int:
    dest = resolve_data_dir(args.dest)
    source = find_source(args.source)
    if source is None:
        if has_splits(dest):
            print(f"hsd data: {dest} already holds the splits; nothing to link (no ../shared/data here)")
            return 0
        print(missing_message(dest))
        return 1
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create data directory {dest}: {exc.strerror}; pass --dest or set HSD_DATA_DIR") from None
    place: Callable[[Path, Path], str] = copy_item if args.copy else link_item
    for item in ITEMS:
        src = source / item
        if not src.is_dir():
            print(f"{dest / item}: skipped, {src} does not exist")
            continue
        try:
            print(f"{dest / item}: {place(src, dest / item)}")
        except OSError as exc:
            raise DataError(f"cannot write {dest / item}: {exc.strerror}; check permissions of {dest}") from None
    if not has_splits(dest):
        print(f"warning: {dest / 'unified'} still lacks some of unified_{{{','.join(SPLITS)}}}.json")
        return 1
    print(f"hsd data: dataset ready in {dest}")
    return 0
