"""Names of businesses and people, and the ways other departments spell them.

A business name is built from parts (region, trade name 字号, industry, organisation form, branch) so that a
feed can drop or respell one part the way its clerks do. Trade names come from a small common pool drawn with
Zipf weights (鑫源, 恒信 … recur across unrelated units) and from rarer character combinations.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect
from dataclasses import dataclass, replace

from pipelines.generate.geography import City, District


class Weighted:
    """Fast weighted choice: ``random.choices`` without rebuilding cumulative weights on every call."""

    def __init__(self, items: tuple, weights: tuple[float, ...]) -> None:
        if len(items) != len(weights):
            raise ValueError(f"{len(items)} items but {len(weights)} weights")
        self.items = items
        self.cumulative = tuple(itertools.accumulate(weights))

    def pick(self, rng: random.Random):  # type: ignore[no-untyped-def]
        return self.items[bisect(self.cumulative, rng.random() * self.cumulative[-1])]


# -- People ------------------------------------------------------------------------------------------------

SURNAMES = Weighted(
    tuple(
        "王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 林 高 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 "
        "彭 曾 肖 田 董 潘 袁 蔡 蒋 余 于 杜 叶 程 魏 苏 吕 丁 任 卢 姚 沈 钟 姜 崔 谭 陆 范 汪 廖 "
        "石 金 韦 贾 夏 付 方 邹 熊 白 孟 秦 邱 侯 江 尹 薛 闫 段 雷 龙 黎 史 陶 贺 毛 郝 顾 龚 邵 "
        "万 钱 戴 严 欧阳 诸葛 司马".split()
    ),
    (
        7.3, 7.0, 6.8, 5.4, 4.6, 3.1, 2.3, 2.2, 2.0, 1.9, 1.6, 1.5, 1.4, 1.3, 1.3, 1.2, 1.2, 1.1, 1.1,
        0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5,
        0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3,
        0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3,
        0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2,
        0.2, 0.2, 0.03, 0.01, 0.01,
    ),
)  # fmt: skip
GIVEN_NAME_CHARS = tuple(
    "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀 霞 平 刚 桂 英 华 建 国 文 辉 玲 燕 鹏 飞 "
    "宇 浩 婷 雪 梅 红 波 斌 林 峰 俊 晨 欣 怡 佳 琳 子 轩 涵 博 睿 思 雨 晓 海 金 亮 春 新 志 永 "
    "小 玉 兰 凤 云 慧 琴 宁 倩 颖 健 成 宏 德 立 荣 嘉 诚 一 梓 萱 泽 昊 然 铭 瑶 悦 雯 蕾 彤 鑫 "
    "凯 帆 旭 东 丹 阳 莉 萍 晶 楠 坤 龙 庆 祥 福 贵 有 生 秋 冬".split()
)


def person_name(rng: random.Random) -> str:
    given = rng.choice(GIVEN_NAME_CHARS)
    if rng.random() < 0.75:
        given += rng.choice(GIVEN_NAME_CHARS)
    return SURNAMES.pick(rng) + given


def person_name_variant(name: str, rng: random.Random, space: float) -> str:
    """As a clerk or courier typed it: now and then with a space (王 伟) or in traditional script."""
    roll = rng.random()
    if roll < space:
        return f"{name[0]} {name[1:]}"
    if roll < space * 1.3:
        return name.translate(TRADITIONAL)
    return name


# -- Trade names (字号) --------------------------------------------------------------------------------------

COMMON_TRADE_NAMES = tuple(
    "鑫源 恒信 华泰 宏达 永信 金诚 天宇 瑞丰 博远 嘉禾 恒达 众创 安泰 中诚 盛世 汇通 新华 华达 宏图 "
    "腾飞 鼎盛 锦程 隆兴 德胜 富源 润泽 凯瑞 佳和 明远 东升 华昌 顺发 兴旺 永盛 通达 广源 天成 聚鑫 "
    "鑫达 鑫盛 金鼎 金泰 银河 海纳 同创 远航 启航 卓越 精诚 诚信 信达 宏远 华夏 中天 天盛 恒泰 和信 "
    "瑞祥 吉祥 福瑞 利达 利华 联创 华联 百汇 鸿运 鸿达 宏盛 金源 晨光 阳光 绿源 蓝天 星辰 启明 思源 "
    "智汇 睿智 卓信 弘毅 致远 博雅 尚品 优品 乐享 悦达 和美 美佳 汇丰 恒昌 永达 万通 万鑫 金盛 鼎信 "
    "东方 新锐 亿达 恒通 盛达 华盛 正大 宝丰 瑞达 德润".split()
)
# Zipf weights: the first names recur across many unrelated units, the last ones only now and then.
COMMON_TRADES = Weighted(COMMON_TRADE_NAMES, tuple(1 / (rank + 3) for rank in range(len(COMMON_TRADE_NAMES))))
TRADE_CHARS = tuple(
    "鑫 源 恒 信 华 泰 宏 达 永 金 诚 天 宇 瑞 丰 博 远 嘉 禾 众 创 安 中 盛 世 汇 通 新 图 腾 飞 鼎 "
    "锦 程 隆 兴 德 胜 富 润 泽 凯 佳 和 明 东 昌 顺 发 旺 广 成 聚 银 海 纳 同 航 启 卓 越 精 智 睿 "
    "尚 品 乐 享 悦 美 晨 光 阳 绿 蓝 星 辰 思 致 弘 毅 雅 祥 吉 福 利 联 百 鸿 运 展 奥 康 宁 泓 浩 "
    "瀚 峰 岳 川 澜 柏 松 竹 琪 璟 翔 骏 驰 鹏 杰 俊 豪 铭 朗 坤 铭 振 威 力 磊 晟 昊 旭 辉 煌 骐".split()
)
SHOP_TRADE_NAMES = tuple(
    "小鹿 乐淘 禾木 米粒 橙子 布丁 咔咔 暖暖 糖果 森林 半夏 南风 木子 七月 柚子 花生 栗子 麦穗 星河 "
    "初见 拾光 小满 安然 素履 青柠 时光 悠然 棉花 豆豆 一禾 叮当 喵喵 知夏 云朵 小野 木木 团团 "
    "甜心 晴天 向阳 山野 慢调 稻香 小岛 鹿鸣 南山 北屿 清欢".split()
)


def trade_name(rng: random.Random) -> str:
    """A 字号: common ones repeat across units; the rest are rarer two- to four-character combinations."""
    if rng.random() < 0.4:
        return COMMON_TRADES.pick(rng)
    length = 2 if rng.random() < 0.72 else 3 if rng.random() < 0.75 else 4
    return "".join(rng.choice(TRADE_CHARS) for _ in range(length))


# -- Industries ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Industry:
    word: str  # 科技, 餐饮管理; for individual businesses the whole tail (面馆, 五金店)
    code: str  # GB/T 4754 class
    sector: str  # office / retail / restaurant / service / factory / logistics / construction / online / farm


def _industries(rows: str) -> Weighted:
    parsed = [line.split() for line in rows.strip().splitlines()]
    return Weighted(
        tuple(Industry(word, code, sector) for word, code, sector, _ in parsed),
        tuple(float(weight) for *_, weight in parsed),
    )


COMPANY_INDUSTRIES = _industries(
    """
    科技        M7519  office        14
    网络科技    I6450  office         8
    信息技术    I6531  office         5
    软件        I6513  office         2
    智能科技    M7519  office         3
    生物科技    M7512  office         2
    贸易        F5199  office        12
    商贸        F5199  office         6
    进出口      F5179  office         2
    电子商务    F5292  online         4
    餐饮管理    H6210  restaurant     5
    建筑工程    E4790  construction   4
    装饰工程    E5012  construction   4
    物流        G5990  logistics      3
    供应链      G5990  logistics      2
    文化传媒    R8890  office         4
    广告        L7251  office         2
    管理咨询    L7243  office         3
    企业管理    L7219  office         2
    物业管理    K7020  office         2
    人力资源    L7263  office         1
    教育科技    P8399  office         2
    健康管理    Q8499  office         1
    医疗器械    F5154  office         1
    机械设备    C3499  factory        3
    服饰        C1819  factory        2
    纺织        C1711  factory        1
    食品        C1499  factory        2
    新材料      C2929  factory        1
    五金制品    C3389  factory        1
    汽车服务    O8111  service        2
    环保科技    N7721  office         1
    农业开发    A0190  farm           1
    """
)
INDIVIDUAL_TRADES = _industries(
    """
    面馆            H6220  restaurant  6
    小吃店          H6220  restaurant  5
    快餐店          H6220  restaurant  3
    川菜馆          H6210  restaurant  2
    火锅店          H6210  restaurant  2
    烧烤店          H6210  restaurant  2
    早餐店          H6220  restaurant  2
    水果店          F5223  retail      4
    便利店          F5213  retail      5
    超市            F5212  retail      3
    五金店          F5281  retail      3
    烟酒店          F5227  retail      3
    副食店          F5229  retail      2
    日用品店        F5239  retail      2
    服装店          F5232  retail      4
    鞋店            F5233  retail      1
    茶叶店          F5226  retail      1
    花店            F5239  retail      1
    文具店          F5241  retail      1
    建材商行        F5289  retail      2
    百货商行        F5211  retail      2
    美发店          O8040  service     4
    美容店          O8040  service     3
    足浴店          O8051  service     1
    干洗店          O8030  service     1
    家政服务部      O8010  service     2
    汽车维修部      O8111  service     2
    手机维修部      O8122  service     2
    电器维修部      O8131  service     1
    电子商务商行    F5292  online      2
    服饰网店        F5292  online      1
    """
)
SOLE_PROPRIETORSHIP_FORMS = ("商行", "经营部", "工作室", "服务部")
SHOP_GOODS = tuple(
    "家居 服饰 女装 童装 零食 茶叶 美妆 母婴 数码 手作 文具 宠物用品 饰品 鞋包 家纺 花茶".split()
)
SHOP_ENDINGS = tuple("小店 旗舰店 专营店 小铺 工作室 优选 严选 馆 店".split())

# -- Business names ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameParts:
    region: str  # 杭州, 浙江, 杭州市西湖区, '' (none)
    trade: str
    industry: str
    form: str  # 有限公司, 有限责任公司, 股份有限公司, '' (individual businesses carry it in ``industry``)
    bracket: str = ""  # 杭州, when written 鑫源（杭州）科技有限公司
    branch: str = ""  # 滨江分公司

    @property
    def full(self) -> str:
        bracket = f"（{self.bracket}）" if self.bracket else ""
        return f"{self.region}{self.trade}{bracket}{self.industry}{self.form}{self.branch}"


def company_name(
    rng: random.Random, city: City, district: District, industry: Industry, form: str
) -> NameParts:
    trade = trade_name(rng)
    roll = rng.random()
    if roll < 0.62:
        return NameParts(city.short, trade, industry.word, form)
    if roll < 0.72:
        return NameParts(city.name, trade, industry.word, form)
    if roll < 0.79:
        return NameParts(city.province_short, trade, industry.word, form)
    if roll < 0.86:
        return NameParts("", trade, industry.word, form, bracket=city.short)
    if roll < 0.90:
        return NameParts(city.name + district.name, trade, industry.word, form)
    return NameParts("", trade, industry.word, form)


def surname_of(name: str) -> str:
    return name[:2] if name[:2] in ("欧阳", "诸葛", "司马") else name[0]


def nickname(rng: random.Random, name: str) -> str:
    """What customers and couriers call a shop's owner: 老王, 张姐, 阿伟, 小伟."""
    surname, given = surname_of(name), name[len(surname_of(name)) :]
    roll = rng.random()
    if roll < 0.3:
        return "老" + surname
    if roll < 0.6:
        return surname + rng.choice(("姐", "哥", "嫂", "师傅", "老板"))
    return rng.choice(("阿", "小")) + given[-1]


def individual_trade(rng: random.Random, operator: str) -> str:
    """Small shops take the operator's surname (张记, 老王), a common 字号, or no 字号 but the operator."""
    surname = surname_of(operator)
    roll = rng.random()
    if roll < 0.28:
        return surname + "记"
    if roll < 0.42:
        return "老" + surname
    if roll < 0.47:
        return surname + rng.choice(("姐", "哥", "嫂"))
    if roll < 0.58:
        return operator
    return trade_name(rng)


def individual_name(rng: random.Random, city: City, district: District, trade: str, tail: str) -> NameParts:
    """杭州市西湖区张记面馆, 西湖区老王水果店, or just 张记面馆."""
    roll = rng.random()
    region = city.name + district.name if roll < 0.6 else district.name if roll < 0.85 else ""
    return NameParts(region, trade, tail, "")


def shop_name(rng: random.Random) -> NameParts:
    """An online shop's name (not registered anywhere): 小鹿家居旗舰店, 米粒手作工作室."""
    return NameParts("", rng.choice(SHOP_TRADE_NAMES), rng.choice(SHOP_GOODS), rng.choice(SHOP_ENDINGS))


def branch_parts(parent: NameParts, suffix: str) -> NameParts:
    return replace(parent, branch=suffix)


# -- Respellings ---------------------------------------------------------------------------------------------

# Traditional forms of characters our names use; fold() turns them back.
TRADITIONAL = str.maketrans(
    {
        "华": "華", "汇": "匯", "发": "發", "达": "達", "兴": "興", "丰": "豐", "东": "東", "业": "業",
        "贸": "貿", "电": "電", "网": "網", "络": "絡", "务": "務", "饮": "飲", "馆": "館", "责": "責",
        "设": "設", "广": "廣", "传": "傳", "龙": "龍", "顺": "順", "宝": "寶", "园": "園", "远": "遠",
        "鸿": "鴻", "运": "運", "织": "織", "纺": "紡", "饰": "飾", "装": "裝", "筑": "築", "询": "詢",
        "实": "實", "进": "進", "国": "國", "区": "區", "门": "門", "车": "車", "医": "醫", "疗": "療",
        "机": "機", "乐": "樂", "诚": "誠", "众": "眾", "创": "創", "腾": "騰", "飞": "飛",
        "锦": "錦", "胜": "勝", "润": "潤", "泽": "澤", "凯": "凱", "阳": "陽", "辉": "輝", "银": "銀",
        "长": "長", "万": "萬", "联": "聯", "亿": "億", "优": "優", "伟": "偉", "丽": "麗", "强": "強",
        "军": "軍", "杰": "傑", "涛": "濤", "刚": "剛", "鹏": "鵬", "晓": "曉", "红": "紅", "刘": "劉",
        "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳", "孙": "孫", "马": "馬", "郑": "鄭",
        "谢": "謝", "韩": "韓", "冯": "馮", "邓": "鄧", "张": "張", "罗": "羅", "贝": "貝", "云": "雲",
        "鲜": "鮮", "烟": "煙", "维": "維", "经": "經", "营": "營", "销": "銷",
    }
)  # fmt: skip
# Look-alikes that clerks type for one another (滙/汇, 峯/峰); fold() maps them back.
LOOKALIKES = str.maketrans({"汇": "滙", "华": "華", "峰": "峯", "里": "裏", "线": "綫", "巨": "鉅"})
# Slips of the pen in a trade name: mostly sound-alikes (鑫/新, 汇/惠) that only the phonetic key sees as
# one, and the odd look-alike that nothing folds (鑫 written 金).
SLIPS = {
    "鑫": "新新金", "汇": "惠", "源": "元", "恒": "衡", "泰": "太", "瑞": "锐", "宏": "鸿", "嘉": "佳",
    "德": "得", "盛": "胜", "达": "大", "华": "化", "诚": "成", "博": "搏", "锦": "金",
}  # fmt: skip
FORM_SWAP = {"有限公司": "有限责任公司", "有限责任公司": "有限公司"}


@dataclass(frozen=True)
class NameStyle:
    """How one feed tends to write a business name: probabilities of each liberty taken."""

    drop_region: float = 0.0
    swap_form: float = 0.0  # 有限公司 ↔ 有限责任公司
    half_brackets: float = 0.0  # (杭州) rather than （杭州）
    short: float = 0.0  # trade name and industry only: 鑫源科技
    trade_only: float = 0.0  # 鑫源
    lookalike: float = 0.0
    traditional: float = 0.0
    space: float = 0.0
    homophone: float = 0.0  # a slip in the trade name (see SLIPS)


def name_variant(parts: NameParts, rng: random.Random, style: NameStyle) -> str:
    """One written form of a business name in the given feed's style."""
    region = "" if parts.region and rng.random() < style.drop_region else parts.region
    form = FORM_SWAP.get(parts.form, parts.form) if rng.random() < style.swap_form else parts.form
    trade = parts.trade
    if rng.random() < style.homophone:
        at = next((i for i, ch in enumerate(trade) if ch in SLIPS), None)
        if at is not None:
            trade = trade[:at] + rng.choice(SLIPS[trade[at]]) + trade[at + 1 :]
    roll = rng.random()
    if roll < style.trade_only:
        text = trade
    elif roll < style.trade_only + style.short:
        text = f"{trade}{parts.industry}{parts.branch}"
    else:
        bracket = ""
        if parts.bracket:
            bracket = f"({parts.bracket})" if rng.random() < style.half_brackets else f"（{parts.bracket}）"
        text = f"{region}{trade}{bracket}{parts.industry}{form}{parts.branch}"
    roll = rng.random()
    if roll < style.lookalike:
        text = text.translate(LOOKALIKES)
    elif roll < style.lookalike + style.traditional:
        text = text.translate(TRADITIONAL)
    if rng.random() < style.space:
        cut = len(region) + len(trade) if not text.startswith(trade) else len(trade)
        if 0 < cut < len(text):
            text = f"{text[:cut]} {text[cut:]}"
    return text
