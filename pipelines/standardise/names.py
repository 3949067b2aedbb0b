"""Company and shop names split into region prefix, trade name (字号), industry, organisation form, branch."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache

from pipelines.resources import VOCABULARIES
from pipelines.standardise.divisions import names_index
from pipelines.standardise.regions import full_division_length, match_region
from pipelines.standardise.text import fold, phonetic_key

# The split's words are reviewed data (``schemas/vocabularies/name_words.toml``), longest first, so
# 有限责任公司 wins over 有限公司.
_WORDS = tomllib.loads((VOCABULARIES / "name_words.toml").read_text(encoding="utf-8"))
ORGANISATION_FORMS = tuple(sorted(_WORDS["organisation_forms"], key=len, reverse=True))
# The same form written two ways in different feeds.
FORM_CANONICAL: dict[str, str] = _WORDS["canonical_forms"]
BRANCH_MARKERS = tuple(_WORDS["branch_markers"])
# Forms only a registered enterprise carries (有限公司, 合伙企业): such a name is some registration's.
REGISTERED_FORMS = tuple(_WORDS["registered_forms"])
INDUSTRY_WORDS = tuple(sorted(_WORDS["industry_words"], key=len, reverse=True))
# The first industry word from the left, the longest where several start at one place.
_INDUSTRY_RE = re.compile("|".join(map(re.escape, INDUSTRY_WORDS)))
# An industry word ending the name, which may take in the form's first character (面馆 in 悦豪面馆).
_INDUSTRY_ENDING_RE = re.compile(f"(?:{_INDUSTRY_RE.pattern})$")
_BRACKETED_RE = re.compile(r"\(([^()]{2,10})\)")


@dataclass(frozen=True)
class CompanyName:
    folded: str
    region: str
    trade_name: str
    industry: str
    organisation_form: str
    branch: str

    @property
    def core(self) -> str:
        """The name without region prefix and with one spelling of the organisation form: what two
        spellings of one registered name share."""
        return f"{self.trade_name}{self.industry}{self.organisation_form}{self.branch}"

    @property
    def trade_name_phonetic(self) -> str:
        return phonetic_key(self.trade_name)


def _strip_bracketed_region(text: str) -> tuple[str, str]:
    """Names like 某某(杭州)科技有限公司 carry their region in brackets."""
    found = _BRACKETED_RE.search(text)
    if found and (found.group(1) == "中国" or match_region(found.group(1)).end == len(found.group(1))):
        return text[: found.start()] + text[found.end() :], found.group(1)
    return text, ""


def _split_branch(text: str) -> tuple[str, str]:
    """``…有限公司余杭分公司`` → (``…有限公司``, ``余杭分公司``): the marker and the place before it, which is
    a division name where one fits, else two characters (滨江, 武林)."""
    if not text.endswith(BRANCH_MARKERS):  # most names: one test instead of one per marker
        return text, ""
    marker = next(m for m in BRANCH_MARKERS if text.endswith(m))
    head = text[: -len(marker)]
    if head.endswith("公司"):  # 某某有限公司分公司: no place name
        return head, marker
    names = names_index()
    place = next((head[-n:] for n in (4, 3, 2) if len(head) > n + 1 and head[-n:] in names), head[-2:])
    if len(head) - len(place) < 2:
        return text, ""
    return head[: -len(place)], place + marker


def parse_company_name(name: str | None, hint: str | None = None) -> CompanyName:
    folded = fold(name)
    text, bracket_region = _strip_bracketed_region(folded)
    text, branch = _split_branch(text)
    form = next((f for f in ORGANISATION_FORMS if text.endswith(f) and len(text) > len(f)), "")
    text = text[: len(text) - len(form)] if form else text
    # a branch's name starts with its head office's region, which may be another province's (成都某某有限公司
    # 杭州分公司): the record's own district is no hint for it
    region_match = match_region(text, None if branch else hint, strict_short=True)
    # 朝阳区… is a district's full name even though 朝阳 alone is a city's short one (朝阳市, Liaoning)
    end = max(region_match.end, full_division_length(text))
    region = ""
    if end and len(text) - end >= 2:
        region, text = text[:end], text[end:]
    industry = ""
    start = min(2, len(text))  # a trade name has at least two characters
    if found := _INDUSTRY_RE.search(text, start):
        text, industry = text[: found.start()], text[found.start() :]
    elif form and (whole := _INDUSTRY_ENDING_RE.search(text + form, start)) and whole.start() < len(text):
        text, industry, form = text[: whole.start()], whole.group(), ""  # 悦豪面馆: 面馆, not 面 + 馆
    return CompanyName(
        folded=folded,
        region=region or bracket_region,
        trade_name=text,
        industry=industry,
        organisation_form=FORM_CANONICAL.get(form, form),
        branch=branch,
    )


@dataclass(frozen=True)
class Surnames:
    single: frozenset[str]
    compound: tuple[str, ...]
    not_given: tuple[str, ...]


@cache
def surnames() -> Surnames:
    """The reviewed surname list (``schemas/vocabularies/surnames.toml``)."""
    data = tomllib.loads((VOCABULARIES / "surnames.toml").read_text(encoding="utf-8"))
    return Surnames(
        frozenset("".join(data["single"].split())), tuple(data["compound"]), tuple(data["not_given"])
    )


def is_personal_name(text: str | None, *, two_characters: bool = False) -> bool:
    """Whether a name where a business name should stand is a person's: a surname and two more Chinese
    characters (one more with ``two_characters``: where bare trade names like 华泰 do not stand), with no
    organisation form, industry or branch (戴娟勇, 欧阳志远; 戴蕾 with two_characters; not 王记, 沈记面馆)."""
    folded = fold(text)
    if not 2 <= len(folded) <= 4 or not all("\u4e00" <= char <= "\u9fff" for char in folded):
        return False
    known = surnames()
    surname = 2 if folded[:2] in known.compound else 1 if folded[0] in known.single else 0
    given = folded[surname:]
    if (
        not surname
        or len(given) not in ((1, 2) if two_characters else (2,))
        or given.endswith(known.not_given)
    ):
        return False
    business_words = (*ORGANISATION_FORMS, *INDUSTRY_WORDS, *BRANCH_MARKERS)
    return not any(word in given for word in business_words)
