"""Where the package's data files are: feed contracts, output schemas, expectation suites, warning rules,
the trained model, the report template, the business markers of names. Every reader asks here, so a wheel
and a checkout behave alike.

``schemas/`` and ``expectations/`` stay at the top of the repository (people read and diff them there);
setup.cfg maps them into the wheel as ``pipelines/_data/schemas`` and ``pipelines/_data/expectations``, so
there is one copy of each. A checkout (editable install, tests, the Docker image) has no ``_data`` and reads
them beside the package. Paths are plain ``Path``s: installers unpack wheels, and some readers glob or write
(``unitfusion train`` writes the model).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE = Path(str(files("pipelines")))


def _data_dir(name: str) -> Path:
    packaged = PACKAGE / "_data" / name
    return packaged if packaged.is_dir() else PACKAGE.parent / name


SCHEMAS = _data_dir("schemas")
FEED_CONTRACTS = SCHEMAS / "feeds"
FEED_MAPPINGS = SCHEMAS / "mappings"  # which field plays which role, per feed (reviewed)
OUTPUT_SCHEMAS = SCHEMAS / "outputs"
MART_SCHEMAS = SCHEMAS / "marts"
VOCABULARIES = SCHEMAS / "vocabularies"
VERDICT_SCHEMA = SCHEMAS / "verdict.json"
CONTACT_SCOPES = SCHEMAS / "contacts" / "scopes.toml"  # who may reveal which contacts (reviewed)
CONTACT_SOURCES = SCHEMAS / "contacts" / "sources.toml"  # where a unit's best contact comes from (reviewed)
EXPECTATIONS = _data_dir("expectations")
WARNING_RULES = PACKAGE / "rules" / "warning_rules.toml"
UNIT_MODEL = PACKAGE / "resolve" / "unit_model.json"
REPORT_TEMPLATE = PACKAGE / "ops" / "report.html.j2"
BUSINESS_MARKERS = PACKAGE / "business_markers.toml"
MART_RULES = PACKAGE / "marts" / "marts.toml"
MART_TEMPLATES = PACKAGE / "marts"  # unit profile and township pack pages (*.html.j2)


def data_files() -> list[Path]:
    """Every data file the package reads at run time (tests check each exists and the wheel carries it)."""
    return [
        *sorted(FEED_CONTRACTS.glob("*.json")),
        *sorted(FEED_MAPPINGS.glob("*.toml")),
        *sorted(OUTPUT_SCHEMAS.glob("*.json")),
        *sorted(MART_SCHEMAS.glob("*.json")),
        *sorted(VOCABULARIES.glob("*.csv")),
        *sorted(VOCABULARIES.glob("*.toml")),
        *sorted(MART_TEMPLATES.glob("*.html.j2")),
        VERDICT_SCHEMA,
        CONTACT_SCOPES,
        CONTACT_SOURCES,
        *sorted(EXPECTATIONS.glob("*.json")),
        WARNING_RULES,
        UNIT_MODEL,
        REPORT_TEMPLATE,
        BUSINESS_MARKERS,
        MART_RULES,
    ]
