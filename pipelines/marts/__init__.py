"""BI marts, activity tiers and the pages people read (unit profiles, township packs), built from a register
run. Above standardise and the register's tables; below the pass (``pipelines.landing``) and the CLI."""
