"""Task functions of the file batches example."""

from typing import Any


def list_files(folder: str, files: list[dict[str, Any]]) -> str:
    """Print each file of the batch; return how many there are and their total size."""
    for file in files:
        print(f"{file['name']}: {file['size']} bytes")
    total = sum(int(file["size"]) for file in files)
    names = ", ".join(file["name"] for file in files)
    return f"{len(files)} files, {total} bytes: {names}"
