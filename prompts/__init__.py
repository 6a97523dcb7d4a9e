"""Jinja2 templates (export now; reflection and curation prompts later) and their sandboxed loader."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).parent / "templates"


def environment(user_dir: Optional[Path] = None) -> SandboxedEnvironment:
    """Templates from the user's folder first (overrides), then memkit's own; always sandboxed,
    because a user template is code we did not write and renders text from untrusted runs."""
    loaders = [FileSystemLoader(str(user_dir))] if user_dir else []
    loaders.append(FileSystemLoader(str(TEMPLATES)))
    return SandboxedEnvironment(loader=ChoiceLoader(loaders), undefined=StrictUndefined, autoescape=False,
                                keep_trailing_newline=True, trim_blocks=False)
