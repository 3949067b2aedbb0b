"""Standardisation: pure functions that make departmental spellings of one business comparable."""

from pipelines.standardise.addresses import Address, parse_address
from pipelines.standardise.codes import (
    is_valid_id_number,
    is_valid_taxpayer_id,
    is_valid_uscc,
    org_code_of,
    uscc_parts,
)
from pipelines.standardise.names import CompanyName, parse_company_name
from pipelines.standardise.phones import Phone, parse_phone
from pipelines.standardise.text import fold, phonetic_key

__all__ = [
    "Address",
    "CompanyName",
    "Phone",
    "fold",
    "is_valid_id_number",
    "is_valid_taxpayer_id",
    "is_valid_uscc",
    "org_code_of",
    "parse_address",
    "parse_company_name",
    "parse_phone",
    "phonetic_key",
    "uscc_parts",
]
