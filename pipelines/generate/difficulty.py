"""How hard the generated feeds are: the shares and rates the generator draws with, as one reviewed table.

``DIFFICULTIES["default"]`` holds the rates the generator has always used (its output is unchanged for a
(units, seed, vocabulary)); ``"hard"`` varies the data the way the pilots' feeds did, so that accuracy can be
reported across levels. A rate that is 0 or 1 at the default makes no draw there (see ``chance``), which is
how a variation only the hard level has stays out of the default's random stream.

What "hard" changes, and what the ground truth says for each case:

- Test records: most carry no work unit. A legal representative's test stays the unit's (the ID number on
  the licence ties it, as at the default). An employee's test that names no work unit is the unit's only when
  its address is the unit's workplace; tested at home, nothing in the record points at the unit, and it is a
  private person's record (truth null), as the register could never know better.
- Registered phones: more shops and small companies register the owner's mobile, which then also shows in
  the owner's other units and personal records. Records stay the unit's.
- Waybill senders write the shop's sign name, the owner's name or a nickname (张姐, 老王) more often than the
  registered name; online sellers do it for all their parcels. The parcels are the unit's business: truth is
  the unit.
- Electricity accounts at a shop front or office held in the landlord's name (the landlord's phone, no
  USCC) or in the owner's own name: the meter measures the unit's premises and its consumption, so truth is
  the unit that works there.
- More liberties in names and addresses (dropped regions, short and trade-only names, sound-alike slips,
  look-alikes, dropped townships, dashed and full-width numbers) and twice the blank fields.
- Platform shops show their registered name and their licence less often, a trade-only or short name more
  often (the feeds added later, ``added.py``: drawn from their own generator, so the others are unchanged).

Department spellings of codes (``vocabulary``) are a separate knob: any level goes with any vocabulary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from pipelines.generate.geography import AddressStyle
from pipelines.generate.names import NameStyle

AS_REGISTERED = NameStyle()  # no liberty taken
FULL_ADDRESS = AddressStyle(province=1.0, city=1.0, township=1.0)


@dataclass(frozen=True)
class Difficulty:
    """The shares a sample is drawn with; see the module docstring for what each level means."""

    # How each feed writes names and addresses.
    tax_name: NameStyle
    power_name: NameStyle
    waybill_name: NameStyle
    nucleic_name: NameStyle
    registration_address: AddressStyle
    tax_address: AddressStyle
    power_address: AddressStyle
    waybill_address: AddressStyle
    nucleic_address: AddressStyle
    blanks: float = 1.0  # scale on every feed's share of fields left out (``feeds.BLANKS``)
    # Registered phones: individual businesses that give the operator's mobile; other units a landline.
    individual_mobile: float = 0.85
    company_landline: float = 0.55
    # A legal rep's test: one draw; below the first share it names the unit, below the second an
    # individual business's operator writes 个体/自营, else nothing.
    rep_names_unit: float = 0.7
    rep_self_employed: float = 0.8
    employee_names_unit: float = 1.0  # an employee's test names the work unit
    # An occasional waybill's sender company: one draw against rising shares, as DepartmentVocabulary.
    sender_company: tuple[tuple[str, float], ...] = (("registered", 0.9), ("none", 1.0))
    steady_informal: float = 0.0  # online sellers that give a sign name, the owner or a nickname throughout
    # Power accounts at a shop front or office: in the landlord's name, in the owner's own name.
    landlord_account: float = 0.0
    owner_account: float = 0.0
    # The feeds added later (added.py), drawn from their own generator: the others are the same without them.
    # A platform shop's name: one draw against rising shares (the registered name, its sign, the owner's
    # nickname); registered units' shops that show their licence's USCC.
    shop_name: tuple[tuple[str, float], ...] = (("registered", 0.2), ("sign", 0.9), ("nickname", 1.0))
    platform_licence: float = 0.75
    platform_name: NameStyle = AS_REGISTERED
    bookkeeping_name: NameStyle = AS_REGISTERED
    platform_address: AddressStyle = FULL_ADDRESS
    bookkeeping_address: AddressStyle = FULL_ADDRESS


def chance(rng: random.Random, share: float) -> bool:
    """A draw with probability ``share``; none at all when the share is 0 or 1."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    return rng.random() < share


# fmt: off
DEFAULT = Difficulty(
    tax_name=NameStyle(
        drop_region=0.06, swap_form=0.08, half_brackets=0.5, lookalike=0.01, traditional=0.005, space=0.01
    ),
    power_name=NameStyle(
        drop_region=0.15, swap_form=0.1, half_brackets=0.6, short=0.03, lookalike=0.02, traditional=0.01,
        space=0.03, homophone=0.01,
    ),
    waybill_name=NameStyle(
        drop_region=0.35, swap_form=0.1, half_brackets=0.7, short=0.25, trade_only=0.04, lookalike=0.02,
        traditional=0.01, space=0.04, homophone=0.02,
    ),
    nucleic_name=NameStyle(
        drop_region=0.4, swap_form=0.1, half_brackets=0.7, short=0.3, trade_only=0.08, lookalike=0.02,
        traditional=0.01, space=0.03, homophone=0.03,
    ),
    registration_address=AddressStyle(
        province=0.9, city=1.0, township=0.8, block_words=("幢", "号楼"), floor=0.03
    ),
    tax_address=AddressStyle(
        province=0.3, city=0.9, township=0.5, block_words=("幢", "号楼", "栋"), room_words=("室", "室", "房"),
        floor=0.1, dashed=0.03, full_width=0.01, space=0.01,
    ),
    power_address=AddressStyle(
        province=0.1, city=0.6, township=0.4, block_words=("幢", "栋", "号楼"), room_words=("室", "", "房"),
        floor=0.25, dashed=0.06, full_width=0.03,
    ),
    waybill_address=AddressStyle(
        province=0.5, city=0.85, township=0.3, block_words=("幢", "栋", "号楼"), room_words=("室", "", "房"),
        floor=0.15, dashed=0.08, full_width=0.05, space=0.05,
    ),
    nucleic_address=AddressStyle(
        province=0.2, city=0.7, township=0.5, room_words=("室", ""), floor=0.05, dashed=0.03, full_width=0.02,
        space=0.02,
    ),
    platform_name=NameStyle(drop_region=0.5, swap_form=0.05, half_brackets=0.7, short=0.2, space=0.02),
    bookkeeping_name=NameStyle(drop_region=0.05, swap_form=0.05, half_brackets=0.3, short=0.03, space=0.01),
    platform_address=AddressStyle(
        province=0.3, city=0.8, township=0.4, block_words=("幢", "栋", "号楼"), room_words=("室", "", "房"),
        floor=0.1, dashed=0.05, full_width=0.02, space=0.03,
    ),
    bookkeeping_address=AddressStyle(
        province=0.7, city=1.0, township=0.7, block_words=("幢", "号楼"), floor=0.03, dashed=0.02
    ),
)

HARD = replace(
    DEFAULT,
    tax_name=replace(
        DEFAULT.tax_name, drop_region=0.15, short=0.05, lookalike=0.03, space=0.03, homophone=0.02
    ),
    power_name=replace(
        DEFAULT.power_name, drop_region=0.3, short=0.1, trade_only=0.03, lookalike=0.04, traditional=0.02,
        space=0.06, homophone=0.04,
    ),
    waybill_name=replace(
        DEFAULT.waybill_name, drop_region=0.5, short=0.35, trade_only=0.1, lookalike=0.04, traditional=0.02,
        space=0.08, homophone=0.06,
    ),
    nucleic_name=replace(
        DEFAULT.nucleic_name, drop_region=0.55, short=0.35, trade_only=0.15, lookalike=0.04, traditional=0.02,
        space=0.06, homophone=0.06,
    ),
    registration_address=replace(DEFAULT.registration_address, township=0.6, dashed=0.02),
    tax_address=replace(DEFAULT.tax_address, township=0.3, dashed=0.08, full_width=0.03, space=0.03),
    power_address=replace(
        DEFAULT.power_address, city=0.4, township=0.2, dashed=0.12, full_width=0.06, space=0.03
    ),
    waybill_address=replace(
        DEFAULT.waybill_address, city=0.6, township=0.15, dashed=0.15, full_width=0.1, space=0.1
    ),
    nucleic_address=replace(
        DEFAULT.nucleic_address, township=0.3, dashed=0.08, full_width=0.05, space=0.05
    ),
    blanks=2.0,
    individual_mobile=0.97,
    company_landline=0.35,
    rep_names_unit=0.3,
    rep_self_employed=0.45,
    employee_names_unit=0.35,
    sender_company=(("registered", 0.35), ("sign", 0.5), ("owner", 0.65), ("nickname", 0.8), ("none", 1.0)),
    steady_informal=0.5,
    landlord_account=0.2,
    owner_account=0.15,
    shop_name=(("registered", 0.1), ("sign", 0.8), ("nickname", 1.0)),
    platform_licence=0.5,
    platform_name=NameStyle(
        drop_region=0.7, swap_form=0.1, half_brackets=0.7, short=0.35, trade_only=0.1, lookalike=0.03,
        space=0.05, homophone=0.03,
    ),
    bookkeeping_name=replace(DEFAULT.bookkeeping_name, drop_region=0.15, short=0.08, lookalike=0.02),
    platform_address=replace(DEFAULT.platform_address, city=0.6, township=0.2, dashed=0.12, full_width=0.05),
    bookkeeping_address=replace(DEFAULT.bookkeeping_address, township=0.5, dashed=0.05),
)
# fmt: on

DIFFICULTIES: dict[str, Difficulty] = {"default": DEFAULT, "hard": HARD}
