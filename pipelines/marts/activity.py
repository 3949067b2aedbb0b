"""What ``unit_month`` says about each unit over time: births, closures, dormancy and revivals per month
(``demography``), the activity and credit tier of each unit, and the lock-on lists townships follow up.

A unit is active in a month when any activity flag of ``unit_month`` is set. Its months run from its first
month with any record to the reference month ("now": the latest month of the tax and electricity figures,
as the warnings see it, ``Resolution.state.reference``); months with no record are inactive.
``dormant_months`` inactive months in a row make it dormant, counted in the month the run reaches that
length (known then, without looking ahead); its next active month is a revival. Everything is computed
over all units at once in DuckDB: the cost follows the rows of ``unit_month``.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.contracts import contract
from pipelines.mappings import anchor_feeds, mapping
from pipelines.marts.config import MartConfig
from pipelines.marts.sql import month_index, month_text, query

CLOSED_STATUSES = ("cancelled", "revoked")  # a registration that ended: the month it changed is a closure


def _registrations(feed: str, table: pa.Table) -> pa.Table:
    """An anchor feed's records: when established, the month of their last change, the abnormal listing
    (the fields in the mapping's ``established_on``, ``moment`` and ``abnormal_since`` roles)."""
    roles = mapping(feed).roles

    def role(name: str, kind: pa.DataType) -> pa.Array:
        return table[roles[name]].cast(kind) if name in roles else pa.nulls(table.num_rows, kind)

    changed = table[roles["moment"]]
    changed_month = contract(feed).record_periods(pa.table({roles["moment"]: changed}))
    return pa.table(
        {
            "feed": pa.array([feed] * table.num_rows, pa.string()),
            "record_id": table["record_id"],
            "established": role("established_on", pa.date32()),
            "changed_month": changed_month.cast(pa.string()),
            "abnormal_since": role("abnormal_since", pa.date32()),
        }
    )


def registration_facts(links: pa.Table, records: dict[str, pa.Table]) -> pa.Table:
    """Per registered unit: the month it was established, the month its registration last changed, and
    whether it is listed as abnormal."""
    tables = [_registrations(feed, records[feed]) for feed in anchor_feeds()]
    return query(
        """
        SELECT l.unit_id, strftime(min(r.established), '%Y-%m') AS established_month,
               max(r.changed_month) AS changed_month, bool_or(r.abnormal_since IS NOT NULL) AS abnormal
        FROM registrations r JOIN links l USING (feed, record_id)
        GROUP BY l.unit_id
        """,
        registrations=pa.concat_tables(tables),
        links=links.select(["feed", "record_id", "unit_id"]),
    )


def _spells_sql(config: MartConfig, reference: str) -> str:
    """Dormancy from the gaps between a unit's active months, without a row per month: ``active`` (the
    active months, each with the one before), ``span`` (first record, last active month), ``events`` (the
    month a unit went dormant or revived). A gap of more than ``dormant_months`` between two active months
    is a dormant spell: it began ``dormant_months`` after the first and ended with a revival at the second;
    ``dormant_months`` or more since the last active month is one still going on."""
    dormant, ref = config.dormant_months, month_index(f"'{reference}'")
    return f"""
        am AS (SELECT unit_id, {month_index("period")} AS m, active AND m <= {ref} AS active FROM unit_month),
        active AS (
            SELECT unit_id, m, lag(m) OVER (PARTITION BY unit_id ORDER BY m) AS previous
            FROM am WHERE active
        ),
        span AS (
            SELECT unit_id, min(m) AS first_m, max(m) FILTER (WHERE active) AS last_active
            FROM am GROUP BY unit_id
        ),
        events AS (
            SELECT unit_id, previous + {dormant} AS m, 1 AS went_dormant, 0 AS revived
            FROM active WHERE m - previous > {dormant}
            UNION ALL
            SELECT unit_id, m, 0, 1 FROM active WHERE m - previous > {dormant}
            UNION ALL
            SELECT unit_id, last_active + {dormant}, 1, 0 FROM span WHERE {ref} - last_active >= {dormant}
        )"""


def demography(
    unit_month: pa.Table, units: pa.Table, registration: pa.Table, config: MartConfig, reference: str | None
) -> pa.Table:
    """Births, closures, revivals, units going dormant and active units per month, division, township and
    industry section. A birth is the month a unit was established (registered units) or its first month
    with any record (the others); a closure the month a registration that is now cancelled or revoked last
    changed. ``reference``: the latest month of the figures."""
    if reference is None:
        return _empty_demography()
    closed = ", ".join(f"'{status}'" for status in CLOSED_STATUSES)
    return query(
        f"""
        WITH {_spells_sql(config, reference)},
        monthly AS (
            SELECT unit_id, {month_text("m")} AS period, 1 AS active, 0 AS dormant, 0 AS revived,
                   0 AS birth, 0 AS closure
            FROM active
            UNION ALL
            SELECT unit_id, {month_text("m")}, 0, went_dormant, revived, 0, 0 FROM events
        ),
        births AS (
            SELECT s.unit_id, coalesce(r.established_month, {month_text("s.first_m")}) AS period,
                   0, 0, 0, 1, 0
            FROM span s LEFT JOIN registration r USING (unit_id)
        ),
        closures AS (
            SELECT r.unit_id, r.changed_month, 0, 0, 0, 0, 1
            FROM registration r JOIN units u USING (unit_id)
            WHERE u.status IN ({closed}) AND r.changed_month IS NOT NULL
        ),
        everything AS (SELECT * FROM monthly UNION ALL SELECT * FROM births UNION ALL SELECT * FROM closures)
        SELECT e.period, u.division_code, u.township, u.industry_section,
               sum(e.birth)::BIGINT AS births, sum(e.closure)::BIGINT AS closures,
               sum(e.revived)::BIGINT AS revivals, sum(e.dormant)::BIGINT AS went_dormant,
               sum(e.active)::BIGINT AS active_units
        FROM everything e JOIN units u USING (unit_id)
        GROUP BY ALL
        ORDER BY ALL
        """,
        unit_month=unit_month,
        units=units.select(["unit_id", "division_code", "township", "industry_section", "status"]),
        registration=registration,
    )


def _empty_demography() -> pa.Table:
    strings = ["period", "division_code", "township", "industry_section"]
    counts = ["births", "closures", "revivals", "went_dormant", "active_units"]
    return pa.schema(
        [pa.field(n, pa.string()) for n in strings] + [pa.field(n, pa.int64()) for n in counts]
    ).empty_table()


def _recency_sql(points: list[list[int]]) -> str:
    cases = " ".join(f"WHEN months_since <= {upto} THEN {score}" for upto, score in points)
    return f"CASE {cases} ELSE 0 END"


def tiers(
    unit_month: pa.Table,
    units: pa.Table,
    registration: pa.Table,
    warnings: pa.Table,
    config: MartConfig,
    reference: str | None,
) -> pa.Table:
    """Each unit's activity and credit score (0..100) and tier A–D, by the rules of ``marts.toml``:
    recency of its last active month, the share of active months and the sources active in the look-back
    window, a registration kept up, less an abnormal listing and warnings in force. Units whose
    registration ended are graded D."""
    tier = config.tier
    ref, look_back = month_index(f"'{reference or '0000-01'}'"), config.look_back_months
    sources = " + ".join(f"bool_or({f.name})::INT" for f in config.activity_flags)
    grades = sorted(tier["grades"].items(), key=lambda grade: -grade[1])
    grade_sql = " ".join(f"WHEN score >= {low} THEN '{name}'" for name, low in grades)
    capped = ", ".join(f"'{status}'" for status in tier["cap"]["grade_d_statuses"])
    penalties = tier["penalties"]
    return query(
        f"""
        WITH um AS (SELECT *, {month_index("period")} AS m FROM unit_month),
        recent AS (
            SELECT unit_id, count(*) FILTER (WHERE active) AS active_months, {sources} AS sources
            FROM um WHERE active AND m > {ref} - {look_back} GROUP BY unit_id
        ),
        last AS (
            SELECT unit_id, {ref} - max(m) FILTER (WHERE active) AS months_since FROM um GROUP BY unit_id
        ),
        warned AS (SELECT unit_id, count(*) AS warnings FROM warnings GROUP BY unit_id),
        scored AS (
            SELECT u.unit_id, u.status,
                {_recency_sql(tier["recency"]["points"])}
                + {tier["volume"]["points"]} * coalesce(r.active_months, 0) / {look_back}
                + {tier["breadth"]["per_source"]} * coalesce(r.sources, 0)
                + CASE WHEN {month_index("g.changed_month")} > {ref} - {look_back}
                       THEN {tier["registration"]["recent_change"]} ELSE 0 END
                - CASE WHEN g.abnormal THEN {penalties["abnormal_listing"]} ELSE 0 END
                - {penalties["per_warning"]} * least(coalesce(w.warnings, 0), {penalties["max_warnings"]})
                AS raw
            FROM units u LEFT JOIN recent r USING (unit_id) LEFT JOIN last l USING (unit_id)
            LEFT JOIN warned w USING (unit_id) LEFT JOIN registration g USING (unit_id)
        ),
        clipped AS (SELECT *, round(greatest(0, least(100, raw)), 1)::DOUBLE AS score FROM scored)
        SELECT unit_id, score AS activity_score,
               CASE WHEN status IN ({capped}) THEN 'D' {grade_sql} ELSE 'D' END AS tier
        FROM clipped ORDER BY unit_id
        """,
        unit_month=unit_month,
        units=units.select(["unit_id", "status"]),
        registration=registration,
        warnings=warnings.select(["unit_id"]),
    )


def lockon(unit_month: pa.Table, units: pa.Table, config: MartConfig, reference: str | None) -> pa.Table:
    """The lock-on lists as of the reference month: long-dormant units, units whose tax or kWh fell
    filing after filing, and pillar units (the largest by sales or kWh) whose latest month moved sharply.
    Each list is ranked by tier (A first: the units that matter most), then by how far the figure moved."""
    if reference is None:
        return _empty_lockon()
    rules, dormant = config.lockon, config.dormant_months
    ref, look_back = month_index(f"'{reference}'"), config.look_back_months
    closed = ", ".join(f"'{status}'" for status in (*CLOSED_STATUSES, "moved_out"))
    signs = [config.measure(flag.measure).label for flag in config.activity_flags]
    idle = "、".join(signs[:-1]) + "或" + signs[-1] if len(signs) > 1 else "".join(signs)
    parts = [
        f"""
        SELECT 'dormant' AS list, unit_id, {month_text("last_active")} AS period, 'activity' AS measure,
               ({ref} - last_active)::DOUBLE AS value, NULL::DOUBLE AS previous_value, NULL::DOUBLE AS change,
               '连续' || ({ref} - last_active) || '个月无{idle}' AS reason
        FROM span JOIN units u USING (unit_id)
        WHERE {ref} - last_active >= {dormant} AND u.status NOT IN ({closed})
        """
    ]
    falls = int(rules["falling_months"])
    for name in rules["falling_measures"]:
        label = config.measure(name).label
        parts.append(
            f"""
            SELECT 'falling', unit_id, {month_text("last_m")}, '{name}', latest, first, latest / first - 1,
                   '{label}连续{falls}期下降，降幅' || round(100 * (1 - latest / first))::INT || '%'
            FROM (
                -- each of the unit's last filings with the one before it (k = 1: the latest)
                SELECT unit_id, max(m) AS last_m, max(v) FILTER (WHERE k = 1) AS latest,
                       max(before) FILTER (WHERE k = {falls}) AS first, count(before) AS compared,
                       bool_and(v < before) AS each_lower
                FROM (
                    SELECT unit_id, m, {name} AS v,
                           row_number() OVER (PARTITION BY unit_id ORDER BY m DESC) AS k,
                           lead({name}) OVER (PARTITION BY unit_id ORDER BY m DESC) AS before
                    FROM um WHERE {name} IS NOT NULL
                )
                WHERE k <= {falls}
                GROUP BY unit_id
            )
            WHERE compared = {falls} AND each_lower AND last_m > {ref} - {look_back} AND first > 0
              AND latest / first <= 1 - {rules["falling_min_drop"]}
            """
        )
    for name in rules["pillar_measures"]:
        label = config.measure(name).label
        parts.append(
            f"""
            SELECT 'pillar_change', unit_id, {month_text("latest")}, '{name}', now_value, baseline,
                   now_value / baseline - 1,
                   '支柱单位' || '{label}' || CASE WHEN now_value > baseline THEN '上升' ELSE '下降' END
                   || round(100 * abs(now_value / baseline - 1))::INT || '%（对比此前月均）'
            FROM (
                SELECT w.unit_id, p.latest,
                       max(w.{name}) FILTER (WHERE w.m = p.latest) AS now_value,
                       avg(w.{name}) FILTER (WHERE w.m < p.latest) AS baseline
                FROM um w, (SELECT max(m) AS latest FROM um WHERE {name} IS NOT NULL) p
                WHERE w.unit_id IN (
                    SELECT unit_id FROM um WHERE m > {ref} - {look_back} AND {name} IS NOT NULL
                    GROUP BY unit_id ORDER BY sum({name}) DESC, unit_id LIMIT {int(rules["pillar_top"])}
                ) AND w.m > {ref} - {look_back} AND w.{name} IS NOT NULL
                GROUP BY w.unit_id, p.latest
            )
            WHERE now_value IS NOT NULL AND baseline > 0
              AND abs(now_value / baseline - 1) >= {rules["pillar_change"]}
            """
        )
    return query(
        f"""
        WITH um AS (SELECT *, {month_index("period")} AS m FROM unit_month), {_spells_sql(config, reference)},
        listed AS ({" UNION ALL ".join(parts)})
        SELECT l.list, l.unit_id, u.name, u.division_code, u.township, u.tier, u.activity_score,
               l.period, l.measure, l.value, l.previous_value, l.change, l.reason,
               row_number() OVER (
                   PARTITION BY l.list ORDER BY u.tier, abs(coalesce(l.change, l.value)) DESC, l.unit_id
               ) AS rank
        FROM listed l JOIN units u USING (unit_id)
        ORDER BY l.list, rank
        """,
        unit_month=unit_month,
        units=units.select(
            ["unit_id", "name", "division_code", "township", "status", "tier", "activity_score"]
        ),
    )


def _empty_lockon() -> pa.Table:
    return pa.schema(
        [
            ("list", pa.string()),
            ("unit_id", pa.string()),
            ("name", pa.string()),
            ("division_code", pa.string()),
            ("township", pa.string()),
            ("tier", pa.string()),
            ("activity_score", pa.float64()),
            ("period", pa.string()),
            ("measure", pa.string()),
            ("value", pa.float64()),
            ("previous_value", pa.float64()),
            ("change", pa.float64()),
            ("reason", pa.string()),
            ("rank", pa.int64()),
        ]
    ).empty_table()
