"""Warning rules: units whose figures do not fit together (rules and thresholds in ``warning_rules.toml``)."""
