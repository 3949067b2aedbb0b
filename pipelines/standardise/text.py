"""Folding Chinese text so that variants of one name compare equal: width, script and look-alikes."""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

# Characters that registration clerks, taxpayers and couriers swap for one another; folded to one form.
LOOKALIKES = str.maketrans(
    {
        "滙": "汇", "匯": "汇", "華": "华", "\uf90a": "金", "峯": "峰", "鉅": "巨", "綫": "线",
        "裏": "里", "着": "著", "〇": "零", "叁": "三", "貳": "二", "壹": "一", "—": "-", "－": "-",
        "―": "-", "‐": "-", "·": "", "•": "", "・": "",
    }
)  # fmt: skip
_SPACES_RE = re.compile(r"\s+")
# Few texts have spaces or look-alikes: one search finds those that need translating and removing spaces.
_SPACE_OR_LOOKALIKE_RE = re.compile(r"\s|[" + re.escape("".join(map(chr, LOOKALIKES))) + "]")
# A register run folds the same names and addresses many times (grouping keys, then parsing).
_CACHE_SIZE = 1 << 16


@cache
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=_CACHE_SIZE)
def fold(text: str | None) -> str:
    """NFKC (full-width → half-width, compatibility forms), traditional → simplified, look-alikes folded,
    spaces removed. The result is for comparing, not for showing."""
    if not text:
        return ""
    text = _t2s().convert(unicodedata.normalize("NFKC", text))
    if _SPACE_OR_LOOKALIKE_RE.search(text):
        text = _SPACES_RE.sub("", text.translate(LOOKALIKES))
    return text.upper()


@cache
def _pinyin_words():
    """pypinyin's own segmentation into words: a phrase of its dictionary is one word, read as a whole
    (重庆 chongqing, 银行 yinhang, not zhongqing, yinxing), every other character a word of its own."""
    from pypinyin.core import Pinyin

    return Pinyin().seg


@lru_cache(maxsize=_CACHE_SIZE)
def _word_key(word: str) -> str:
    """Toneless pinyin of one word (trade names share a few hundred words, so each is converted once)."""
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(word, style=Style.NORMAL, errors="ignore"))


@lru_cache(maxsize=_CACHE_SIZE)
def phonetic_key(text: str | None) -> str:
    """Toneless pinyin syllables joined: sound-alike trade names (鑫/新, 汇/惠) share a key. The same as
    pypinyin's lazy_pinyin of the folded text, whose words are converted one by one."""
    return "".join(map(_word_key, _pinyin_words()(fold(text)))) if text else ""
