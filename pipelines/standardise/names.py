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

# Longest first, so 有限责任公司 wins over 有限公司.
ORGANISATION_FORMS = tuple(
    sorted(
        (
            "股份有限公司", "有限责任公司", "有限公司", "集团有限公司", "合伙企业", "个人独资企业",
            "普通合伙", "有限合伙", "专业合作社", "公司", "厂", "店", "馆", "行", "部", "社", "中心",
            "工作室", "经营部", "商行", "门市", "超市", "诊所", "事务所",
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip
# The same form written two ways in different feeds.
FORM_CANONICAL = {"有限责任公司": "有限公司", "集团有限公司": "有限公司"}
BRANCH_MARKERS = ("分公司", "分店", "门店", "营业部", "分厂", "办事处", "分部")
INDUSTRY_WORDS = tuple(
    sorted(
        (
            "科技", "信息技术", "网络科技", "电子商务", "贸易", "商贸", "进出口", "实业", "投资", "咨询",
            "管理咨询", "餐饮管理", "餐饮", "酒店管理", "建筑工程", "建设工程", "装饰工程", "装饰设计",
            "工程", "物流", "供应链", "运输", "服饰", "服装", "纺织", "食品", "农业", "生物科技",
            "医疗器械", "医药", "文化传媒", "文化传播", "广告", "传媒", "教育科技", "培训", "健康管理",
            "物业管理", "房地产开发", "房地产", "置业", "机械设备", "机械", "电子", "电器", "五金",
            "汽车服务", "汽车销售", "汽车", "新材料", "材料", "化工", "环保科技", "环保", "能源", "印务",
            "包装", "家具", "家居", "美容", "美发", "面馆", "小吃", "水果", "便利", "烟酒", "副食",
            "日用品", "百货", "五金建材", "建材", "通讯", "软件", "数据", "智能科技", "人力资源",
            "劳务", "保洁", "家政", "茶业", "茶叶", "酒业", "印刷", "设计", "网络", "技术", "服务",
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip
# The first industry word from the left, the longest where several start at one place.
_INDUSTRY_RE = re.compile("|".join(map(re.escape, INDUSTRY_WORDS)))
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
    region_match = match_region(text, hint, strict_short=True)
    # 朝阳区… is a district's full name even though 朝阳 alone is a city's short one (朝阳市, Liaoning)
    end = max(region_match.end, full_division_length(text))
    region = ""
    if end and len(text) - end >= 2:
        region, text = text[:end], text[end:]
    industry = ""
    if found := _INDUSTRY_RE.search(text, min(2, len(text))):  # a trade name has at least two characters
        text, industry = text[: found.start()], text[found.start() :]
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
