"""Find a checkpoint's files: a local folder, a single weights file, or a Hugging Face hub id."""

from __future__ import annotations

import os
from pathlib import Path

from minibert.errors import CheckpointError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_FILES = ["config.json", "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
             "model-*-of-*.safetensors", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin",
             "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "label_map.json"]


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Return a local folder holding the checkpoint's files.

    A local folder is used as it is; a weights file stands for its folder; anything else is a hub id fetched (or
    found in the cache) with huggingface_hub, which honours HF_HUB_OFFLINE and HF_HOME.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    name = str(name_or_path)
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) or name.count("/") > 1
    if looks_local or not name:
        raise CheckpointError(f"{name}: no such file or folder")
    return _download(name)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # very old huggingface_hub
        from huggingface_hub import snapshot_download  # type: ignore
        from huggingface_hub.utils import LocalEntryNotFoundError  # type: ignore
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=offline))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id}: not a local folder, and not in the Hugging Face cache "
            f"({'HF_HUB_OFFLINE is set' if offline else 'the hub could not be reached'}); "
            "download it on a connected machine or pass a local folder") from None
    except Exception as e:  # network errors, unknown repo, bad id
        raise CheckpointError(f"{repo_id}: could not fetch from the Hugging Face hub ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
