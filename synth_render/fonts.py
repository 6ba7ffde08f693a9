"""Fonts available offline, found without fontconfig.

The default set is matplotlib's bundled fonts: matplotlib is a pinned dependency, so every machine renders
the same glyphs and a dataset's bytes depend only on (seed, index). System fonts vary between machines and are
opt-in (`fonts: system` or `all`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib
from matplotlib.ft2font import FT2Font

# Fonts whose code points for '0'..'9' are not digits (symbol encodings) or draw placeholder boxes.
_NOT_TEXT_FONTS = ("cmex10", "cmsy10", "cmmi10", "LastResort")
SYSTEM_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
FONT_SETS = ("bundled", "system", "all")


def has_glyphs(path: Path, characters: str) -> bool:
    try:
        font = FT2Font(str(path))
    except (RuntimeError, OSError):
        return False
    return all(font.get_char_index(ord(c)) for c in characters)


def _usable(paths: list[Path], characters: str) -> list[Path]:
    return [p for p in sorted(paths) if not p.name.startswith(_NOT_TEXT_FONTS) and has_glyphs(p, characters)]


@lru_cache(maxsize=None)
def find_fonts(font_set: str = "bundled", characters: str = "0123456789") -> tuple[Path, ...]:
    """Font files of `font_set` that draw every character in `characters`, in a stable order."""
    if font_set not in FONT_SETS:
        raise ValueError(f"unknown font set {font_set!r}; valid: {', '.join(FONT_SETS)}")
    bundled = list((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))
    system = [p for d in SYSTEM_FONT_DIRS if d.exists() for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    chosen = {"bundled": bundled, "system": system, "all": bundled + system}[font_set]
    fonts = _usable(chosen, characters)
    if not fonts:
        raise RuntimeError(f"no font in set {font_set!r} draws {characters!r}")
    return tuple(fonts)
