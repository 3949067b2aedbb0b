"""Folding Chinese text so that variants of one name compare equal: width, script and look-alikes."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# Characters that registration clerks, taxpayers and couriers swap for one another; folded to one form.
LOOKALIKES = str.maketrans(
    {
        "滙": "汇", "匯": "汇", "華": "华", "金": "金", "鑫": "鑫", "峯": "峰", "鉅": "巨", "綫": "线",
        "裏": "里", "着": "著", "〇": "零", "叁": "三", "貳": "二", "壹": "一", "—": "-", "－": "-",
        "―": "-", "‐": "-", "·": "", "•": "", "・": "",
    }
)  # fmt: skip
_SPACES_RE = re.compile(r"\s+")


@cache
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def fold(text: str | None) -> str:
    """NFKC (full-width → half-width, compatibility forms), traditional → simplified, look-alikes folded,
    spaces removed. The result is for comparing, not for showing."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = _t2s().convert(text).translate(LOOKALIKES)
    return _SPACES_RE.sub("", text).upper()


@cache
def _pinyin():
    from pypinyin import Style, lazy_pinyin

    return lambda text: lazy_pinyin(text, style=Style.NORMAL, errors="ignore")


def phonetic_key(text: str | None) -> str:
    """Toneless pinyin syllables joined: sound-alike trade names (鑫/新, 汇/惠) share a key."""
    return "".join(_pinyin()(fold(text))) if text else ""
