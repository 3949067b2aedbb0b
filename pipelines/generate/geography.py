"""Real cities, districts and townships, and the addresses written for them in different feeds.

Division codes are the real six-digit codes (checked against the cpca adcode table in the tests); townships
and roads are real names of each district. Nine-digit township codes are the district code and the
township's position in our list, which is plausible but not the official numbering.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FULL_WIDTH_DIGITS = str.maketrans("0123456789-", "０１２３４５６７８９－")


@dataclass(frozen=True)
class District:
    code: str
    name: str
    townships: tuple[str, ...]
    roads: tuple[str, ...]

    @property
    def short(self) -> str:
        """西湖区 → 西湖, for branch names (滨江分公司)."""
        return self.name[:-1] if len(self.name) > 2 else self.name

    def township_code(self, township: str) -> str:
        """A nine-digit code: streets (街道) count from 001, towns (镇) from 101."""
        index = self.townships.index(township)
        return f"{self.code}{index + (101 if township.endswith('镇') else 1):03d}"


@dataclass(frozen=True)
class City:
    code: str
    name: str  # 杭州市
    province: str  # 浙江省; for a municipality the same as ``name``
    area_code: str  # 0571
    local_prefixes: str  # first digits of eight-digit local landline numbers
    weight: float
    districts: tuple[District, ...]

    @property
    def short(self) -> str:
        return self.name.removesuffix("市")

    @property
    def province_short(self) -> str:
        return self.province.removesuffix("省").removesuffix("市")

    @property
    def municipality(self) -> bool:
        return self.province == self.name


def _district(code: str, name: str, townships: str, roads: str) -> District:
    return District(code, name, tuple(townships.split()), tuple(roads.split()))


CITIES: tuple[City, ...] = (
    City(
        "330100", "杭州市", "浙江省", "0571", "8852", 0.45,
        (
            _district(
                "330102", "上城区",
                "湖滨街道 清波街道 小营街道 南星街道 紫阳街道 望江街道 凯旋街道 采荷街道 闸弄口街道 "
                "四季青街道 笕桥街道 九堡街道 彭埠街道 丁兰街道",
                "解放路 延安路 庆春路 中山中路 秋涛路 凤起东路 钱江路 新塘路 九堡大道 望江东路 建国南路 "
                "清泰街 河坊街",
            ),
            _district(
                "330105", "拱墅区",
                "米市巷街道 湖墅街道 小河街道 和睦街道 拱宸桥街道 大关街道 上塘街道 祥符街道 康桥街道 "
                "半山街道 武林街道 天水街道 朝晖街道 文晖街道 东新街道 石桥街道",
                "莫干山路 湖墅南路 上塘路 丽水路 大关路 东新路 石祥路 登云路 体育场路 环城北路 香积寺路 "
                "文晖路 绍兴路 萍水街",
            ),
            _district(
                "330106", "西湖区",
                "北山街道 西溪街道 灵隐街道 翠苑街道 文新街道 古荡街道 西湖街道 留下街道 转塘街道 "
                "蒋村街道 三墩镇 双浦镇",
                "文三路 文二路 文一西路 天目山路 古墩路 教工路 学院路 西溪路 紫金港路 留和路 益乐路 "
                "文二西路 保俶路 曙光路",
            ),
            _district(
                "330108", "滨江区",
                "西兴街道 长河街道 浦沿街道",
                "江南大道 滨盛路 江陵路 网商路 长河路 江虹路 六和路 聚才路 滨安路 信诚路 月明路 春晓路 "
                "东信大道 时代大道",
            ),
            _district(
                "330109", "萧山区",
                "城厢街道 北干街道 蜀山街道 新塘街道 宁围街道 新街街道 闻堰街道 瓜沥镇 义桥镇 临浦镇 "
                "衙前镇 党湾镇",
                "市心中路 金城路 人民路 建设一路 北干山南路 通惠中路 鸿宁路 山阴路 萧绍路 育才路 博学路",
            ),
            _district(
                "330110", "余杭区",
                "五常街道 闲林街道 仓前街道 余杭街道 中泰街道 良渚街道 仁和街道 瓶窑镇 径山镇 黄湖镇",
                "文一西路 五常大道 良睦路 仓兴街 向往街 荆长大道 古墩路 海曙路 龙潭路 高教路 爱橙街",
            ),
            _district(
                "330113", "临平区",
                "临平街道 南苑街道 东湖街道 星桥街道 乔司街道 运河街道 崇贤街道 塘栖镇",
                "人民大道 世纪大道 藕花洲大街 南苑街 星桥北路 迎宾路 东湖北路 临东路 超峰东路 顺达路",
            ),
            _district(
                "330114", "钱塘区",
                "白杨街道 下沙街道 河庄街道 义蓬街道 新湾街道 临江街道 前进街道",
                "学源街 文泽路 金沙大道 福城路 海达南路 德胜东路 江东大道 青六中路",
            ),
        ),
    ),
    City(
        "110100", "北京市", "北京市", "010", "8656", 0.35,
        (
            _district(
                "110101", "东城区",
                "东华门街道 景山街道 交道口街道 安定门街道 北新桥街道 东四街道 朝阳门街道 建国门街道 "
                "东直门街道 和平里街道 前门街道 崇文门外街道 东花市街道 龙潭街道 体育馆路街道 天坛街道",
                "东长安街 王府井大街 东四北大街 安定门内大街 建国门内大街 崇文门外大街 东直门南大街 "
                "和平里东街 朝阳门北大街 地安门东大街 东单北大街 广渠门内大街",
            ),
            _district(
                "110102", "西城区",
                "西长安街街道 新街口街道 月坛街道 展览路街道 德胜街道 金融街街道 什刹海街道 "
                "广安门内街道 牛街街道 白纸坊街道 椿树街道 陶然亭街道 大栅栏街道",
                "西直门外大街 阜成门外大街 金融大街 西单北大街 广安门内大街 德胜门外大街 月坛北街 "
                "复兴门内大街 新街口外大街 宣武门外大街 菜市口大街",
            ),
            _district(
                "110105", "朝阳区",
                "建外街道 朝外街道 呼家楼街道 三里屯街道 左家庄街道 香河园街道 和平街街道 安贞街道 "
                "亚运村街道 小关街道 酒仙桥街道 麦子店街道 团结湖街道 八里庄街道 双井街道 劲松街道 "
                "潘家园街道 望京街道 奥运村街道 大屯街道",
                "建国路 朝阳北路 东三环北路 工人体育场北路 酒仙桥路 望京街 阜通东大街 朝阳门外大街 "
                "光华路 霄云路 北苑路 广渠路 东大桥路 姚家园路 惠新东街",
            ),
            _district(
                "110106", "丰台区",
                "右安门街道 太平桥街道 西罗园街道 大红门街道 南苑街道 东高地街道 六里桥街道 丰台街道 "
                "新村街道 长辛店街道 方庄街道 宛平街道 马家堡街道 卢沟桥街道",
                "丰台路 南三环西路 丽泽路 马家堡东路 丰台北路 方庄路 南四环西路 西四环南路 角门路",
            ),
            _district(
                "110108", "海淀区",
                "万寿路街道 羊坊店街道 甘家口街道 紫竹院街道 北下关街道 北太平庄街道 学院路街道 "
                "中关村街道 海淀街道 青龙桥街道 清华园街道 燕园街道 香山街道 清河街道 花园路街道 "
                "西三旗街道 马连洼街道 上地街道 曙光街道",
                "中关村大街 海淀大街 知春路 学院路 北四环西路 上地信息路 苏州街 成府路 颐和园路 "
                "万泉河路 复兴路 西三环北路 北三环西路 上地十街 丹棱街",
            ),
            _district(
                "110112", "通州区",
                "中仓街道 新华街道 北苑街道 玉桥街道 永顺镇 梨园镇 宋庄镇 张家湾镇 马驹桥镇 台湖镇",
                "新华大街 九棵树东路 玉带河大街 运河东大街 通胡大街 梨园北街 新华西街 万盛南街 通朝大街",
            ),
            _district(
                "110115", "大兴区",
                "兴丰街道 林校路街道 清源街道 观音寺街道 天宫院街道 亦庄镇 黄村镇 旧宫镇 西红门镇 瀛海镇",
                "兴华大街 黄村西大街 兴丰大街 金星路 林校路 清源路 旧宫东路 欣宁街",
            ),
        ),
    ),
    City(
        "510100", "成都市", "四川省", "028", "886", 0.20,
        (
            _district(
                "510104", "锦江区",
                "督院街街道 盐市口街道 春熙路街道 书院街街道 合江亭街道 水井坊街道 牛市口街道 "
                "莲新街道 沙河街道 东光街道 狮子山街道 成龙路街道 柳江街道 三圣街道",
                "红星路 东大街 总府路 春熙路 滨江东路 锦华路 东门大街 天仙桥南路 静安路 大慈寺路 水碾河路",
            ),
            _district(
                "510105", "青羊区",
                "西御河街道 汪家拐街道 少城街道 草市街街道 府南街道 光华街道 金沙街道 黄田坝街道 "
                "苏坡街道 文家街道 蔡桥街道",
                "人民中路 蜀都大道 青华路 光华大道 清江东路 西玉龙街 东城根街 宁夏街 长顺上街 金阳路 "
                "日月大道 草堂路",
            ),
            _district(
                "510106", "金牛区",
                "西华街道 荷花池街道 驷马桥街道 茶店子街道 抚琴街道 九里堤街道 五块石街道 黄忠街道 "
                "营门口街道 金泉街道 沙河源街道 凤凰山街道",
                "金牛大道 交大路 蜀汉路 营门口路 沙湾路 抚琴西路 星辉西路 一品天下大街 银沙路",
            ),
            _district(
                "510107", "武侯区",
                "浆洗街街道 望江路街道 玉林街道 跳伞塔街道 火车南站街道 簇桥街道 晋阳街道 红牌楼街道 "
                "簇锦街道 华兴街道 金花桥街道",
                "人民南路 武侯祠大街 科华北路 玉林路 高升桥路 航空路 芳草街 佳灵路 武科西路 晋阳路",
            ),
            _district(
                "510108", "成华区",
                "猛追湾街道 双桥子街道 府青路街道 二仙桥街道 跳蹬河街道 建设路街道 保和街道 青龙街道 "
                "龙潭街道 白莲池街道 万年场街道",
                "建设路 府青路 双林路 猛追湾街 双庆路 杉板桥路 玉双路 驷马桥路 建设北路 华盛路",
            ),
            _district(
                "510112", "龙泉驿区",
                "龙泉街道 大面街道 十陵街道 同安街道 东安街道 柏合街道 西河街道 洛带镇",
                "驿都大道 龙都南路 北京路 星光西路 成龙大道 十陵上街",
            ),
            _district(
                "510116", "双流区",
                "东升街道 西航港街道 九江街道 黄甲街道 怡心街道 协和街道 黄水镇",
                "棠湖东路 白衣上街 西航港大道 长城路 藏卫路 双华路",
            ),
        ),
    ),
)  # fmt: skip

CITY_WEIGHTS = tuple(c.weight for c in CITIES)

# Named office complexes and residential compounds: a prefix and a suffix, so that they repeat realistically.
COMPLEX_PREFIXES = tuple(
    "东部 华星 西溪 世纪 金色 银泰 国际 创新 未来 智慧 天和 数字 星光 宝龙 汇金 中环 东方 新天地 "
    "恒生 润和 海创 紫金 云谷 和达 中天 金座 嘉华 盛世 时代".split()
)
COMPLEX_SUFFIXES = tuple(
    "大厦 中心 广场 科技园 创意园 商务中心 国际中心 软件园 产业园 时代广场 创业园 写字楼".split()
)
COMMUNITY_PREFIXES = tuple(
    "阳光 金色 翠苑 锦绣 和谐 幸福 枫林 桂花 名仕 湖畔 新城 春晓 云栖 梧桐 丁香 碧水 天鹅 望江 "
    "蓝湾 香樟 紫荆 绿园 景华 明珠 玉泉 龙湖 青枫 海棠 朝晖 嘉禾".split()
)
COMMUNITY_SUFFIXES = tuple("家园 花园 小区 公寓 新村 苑 华庭 雅苑 嘉园 一区 二区 三区 府 城".split())
FACTORY_NAMES = tuple("厂房 车间 仓库 工业园".split())


@dataclass(frozen=True)
class Site:
    """One place: what every address of it, however written, refers to."""

    city: City
    district: District
    township: str
    road: str | None  # residential compounds are sometimes given without a road
    number: str | None  # "90" or "88-1"
    complex: str | None = None  # 东部软件园, 阳光家园
    block: int | None = None  # 3 (3幢)
    entrance: int | None = None  # 2 (2单元), residential only
    floor: int | None = None
    room: str | None = None  # "501"
    kind: str = "office"  # office / shop / home / factory

    @property
    def township_code(self) -> str:
        return self.district.township_code(self.township)

    @property
    def street(self) -> str:
        """Road and number, the part that identifies the site in every feed."""
        return f"{self.road or ''}{self.number or ''}"

    def canonical(self) -> str:
        """The full registered form: province, city, district, township, road, number, building, room."""
        head = self.city.name if self.city.municipality else self.city.province + self.city.name
        return head + self.district.name + self.township + self.tail()

    def tail(
        self,
        *,
        block_word: str = "幢",
        room_word: str = "室",
        floor_word: str = "",
        dashed: bool = False,
    ) -> str:
        """Everything after the township, with the given words for building, room and floor."""
        road = f"{self.road}{self.number}号" if self.road else ""
        if dashed and self.road and self.block and self.room and self.kind != "home":
            return f"{self.road}{self.number}-{self.block}-{self.room}"  # 文三路90-3-501
        parts = [road, self.complex or ""]
        if self.block:
            parts.append(f"{self.block}{block_word}")
        if self.entrance:
            parts.append(f"{self.entrance}单元")
        if self.room:
            floor = f"{self.floor}{floor_word}" if floor_word and self.floor else ""
            parts.append(f"{floor}{self.room}{room_word}")
        return "".join(parts)


@dataclass(frozen=True)
class AddressStyle:
    """How one feed tends to write an address: probabilities of each liberty taken."""

    province: float  # keep the province
    city: float  # keep the city (given the province was dropped)
    township: float  # keep the township
    block_words: tuple[str, ...] = ("幢",)
    room_words: tuple[str, ...] = ("室",)
    floor: float = 0.0  # add the floor (5楼501室)
    dashed: float = 0.0  # 90-3-501 instead of 90号3幢501室
    full_width: float = 0.0  # ９０号
    space: float = 0.0  # a space between district and the rest


def render_address(site: Site, rng: random.Random, style: AddressStyle) -> str:
    """One written form of ``site`` in the given style."""
    city = site.city
    if city.municipality:
        head = city.name if rng.random() < style.province + (1 - style.province) * style.city else ""
    elif rng.random() < style.province:
        head = city.province + city.name
    else:
        head = city.name if rng.random() < style.city else ""
    township = site.township if rng.random() < style.township or not site.road else ""
    tail = site.tail(
        block_word=rng.choice(style.block_words),
        room_word=rng.choice(style.room_words),
        floor_word=rng.choice(("楼", "层")) if rng.random() < style.floor else "",
        dashed=rng.random() < style.dashed,
    )
    if style.full_width and rng.random() < style.full_width:
        tail = tail.translate(FULL_WIDTH_DIGITS)
    gap = " " if style.space and rng.random() < style.space else ""
    return f"{head}{site.district.name}{gap}{township}{tail}"


def _number(rng: random.Random) -> str:
    """House numbers: mostly small, some with a sub-number (88-1号)."""
    number = min(int(rng.expovariate(1 / 150)) + 1, 999)
    return f"{number}-{rng.randint(1, 9)}" if rng.random() < 0.06 else str(number)


def new_site(rng: random.Random, city: City, kind: str, district: District | None = None) -> Site:
    """A new place of the given kind (office / shop / home / factory) somewhere in ``city``."""
    district = district or rng.choice(city.districts)
    township = rng.choice(district.townships)
    road = rng.choice(district.roads)
    if kind == "office":
        complex_ = (
            rng.choice(COMPLEX_PREFIXES) + rng.choice(COMPLEX_SUFFIXES) if rng.random() < 0.55 else None
        )
        floor = rng.randint(1, 28)
        return Site(
            city, district, township, road, _number(rng), complex_,
            rng.randint(1, 12) if rng.random() < 0.6 else None,
            None, floor, f"{floor}{rng.randint(1, 20):02d}", kind,
        )  # fmt: skip
    if kind == "shop":
        room = "1" + f"{rng.randint(1, 12):02d}" if rng.random() < 0.3 else None
        return Site(
            city, district, township, road, _number(rng), None, None, None, 1 if room else None, room, kind
        )
    if kind == "factory":
        return Site(
            city, district, township, road, _number(rng),
            rng.choice(FACTORY_NAMES) if rng.random() < 0.3 else None,
            rng.randint(1, 6), None, None, None, kind,
        )  # fmt: skip
    floor = rng.randint(1, 18)
    return Site(
        city, district, township, road if rng.random() < 0.7 else None,
        _number(rng), rng.choice(COMMUNITY_PREFIXES) + rng.choice(COMMUNITY_SUFFIXES),
        rng.randint(1, 30), rng.randint(1, 4), floor, f"{floor}{rng.randint(1, 4):02d}", "home",
    )  # fmt: skip


def other_room(rng: random.Random, site: Site) -> Site:
    """Another room in the same building: a sibling company next door, a unit in an incubator."""
    floor = rng.randint(1, 28)
    return Site(
        site.city, site.district, site.township, site.road, site.number, site.complex,
        site.block, site.entrance, floor, f"{floor}{rng.randint(1, 40):02d}", site.kind,
    )  # fmt: skip
