"""Token counting with tiktoken, offline: litellm ships the encoding files, so point tiktoken there."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from memkit.errors import MemkitError


def _offline_cache_dir() -> str | None:
    spec = importlib.util.find_spec("litellm")  # locates the package without importing it (3 s)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    return str(folder) if folder.is_dir() else None


@lru_cache(maxsize=4)
def encoding(name: str = "o200k_base"):
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        cache = _offline_cache_dir()
        if cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken raises plain exceptions when it cannot fetch an encoding
        raise MemkitError(f"token encoding {name!r} is not available offline ({e.__class__.__name__})") from None


def count_tokens(text: str, name: str = "o200k_base") -> int:
    return len(encoding(name).encode(text, disallowed_special=()))
