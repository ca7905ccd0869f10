"""Folding of names for matching: case- and diacritic-insensitive. Pure."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["fold", "fold_unique"]

# Letters that Unicode does not decompose into a base letter plus a mark.
_SPECIAL = str.maketrans(
    {
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "ð": "d",
        "þ": "th",
        "æ": "ae",
        "Æ": "ae",
        "œ": "oe",
        "Œ": "oe",
        "ı": "i",
        "ß": "ss",
        "ẞ": "ss",
        "’": "'",
        "‘": "'",
    }
)


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Case-fold, drop diacritics and squeeze spaces: "Müller " -> "muller"."""
    return fold_unique(text)


def fold_unique(text: str) -> str:
    """:func:`fold` without its cache, for texts that seldom repeat (ids, mail addresses):
    remembering them would only push names, which do repeat, out of the cache."""
    text = text.translate(_SPECIAL)
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = text.casefold()
    if "  " in text or text[:1] == " " or text[-1:] == " ":
        text = " ".join(text.split())
    return text
