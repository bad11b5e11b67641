"""The app's result files: written under unique names, and deleted once old, with Gradio's own cache cleaning."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from gradio import route_utils

DELETE_CACHE = (600, 3600)  # every 10 minutes, delete result and upload files older than an hour


class ResultFiles:
    """Where one page's handlers write their files: a folder under Gradio's cache, one new name per file."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder or Path(gr.utils.get_upload_folder()) / "stg-studio")

    def new(self, name: str, ending: str) -> Path:
        """A new empty file, e.g. stg-cfg-k2j4x9.mp4."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"stg-{name}-", suffix=ending, dir=self.folder)
        os.close(handle)
        return Path(path)


def _from_snapshots(delete):
    """Gradio deletes old files in a worker thread while iterating the live sets that finishing requests add files
    to; now and then that fails ("Set changed size during iteration") and ends its deletion task for good, so
    files pile up. Hand it copies of the sets, then take from the live sets what it deleted."""
    def delete_files(blocks, age):
        live = blocks.temp_file_sets
        copies = [set(files) for files in live]  # one C call each: no request adds a file halfway through
        before = [set(files) for files in copies]
        delete(SimpleNamespace(blocks=blocks.blocks, temp_file_sets=copies), age)
        for files, was, kept in zip(live, before, copies):
            files -= was - kept

    delete_files.wrapped = delete
    return delete_files


if not hasattr(route_utils.delete_files_created_by_app, "wrapped"):
    route_utils.delete_files_created_by_app = _from_snapshots(route_utils.delete_files_created_by_app)
