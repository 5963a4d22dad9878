"""Where a study's results live: a local directory or any pyarrow filesystem URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Storage:
    """Where a study's results live: a local directory (as given, made absolute) or any
    ``pyarrow.fs`` URI (``file:///abs``, ``s3://bucket/prefix?endpoint_override=host:port&scheme=http``,
    ``gs://bucket/prefix``). Tune gets the filesystem and the path on it; grokray's own files
    (state, trial table, estimate, plots) go through the same filesystem."""

    def __init__(self, location: str) -> None:
        import pyarrow.fs as pafs

        if "://" in location:
            self.filesystem, path = pafs.FileSystem.from_uri(location)
            self.scheme = location.split("://", 1)[0]
        else:
            self.filesystem, path = pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
            self.scheme = ""
        self.local = isinstance(self.filesystem, pafs.LocalFileSystem)
        self.path = path.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def show(self, path: str) -> str:
        """``path`` as a user reads it: a local path, or ``scheme://path`` (no query options)."""
        return path if self.local else f"{self.scheme}://{path}"

    @property
    def tune_filesystem(self) -> Any:
        """Tune's ``storage_filesystem``: None for a local directory (Tune's default)."""
        return None if self.local else self.filesystem

    def exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return self.filesystem.get_file_info(path).type != pafs.FileType.NotFound

    def names(self, path: str) -> list[str]:
        """The names of the entries of the directory ``path`` (none if it does not exist)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(path, allow_not_found=True)
        return [info.base_name for info in self.filesystem.get_file_info(selector)]

    def read_text(self, path: str) -> str:
        with self.filesystem.open_input_stream(path) as stream:
            return stream.read().decode()

    def write_bytes(self, path: str, data: bytes) -> None:
        self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.filesystem.open_output_stream(path) as stream:
            stream.write(data)

    def move(self, source: str, destination: str) -> None:
        """Rename a directory; object stores cannot, so there it is copied, then deleted."""
        import pyarrow.fs as pafs

        try:
            self.filesystem.move(source, destination)
        except (OSError, NotImplementedError):
            pafs.copy_files(source, destination, self.filesystem, self.filesystem)
            self.filesystem.delete_dir(source)
