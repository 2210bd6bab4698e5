"""The catalogue store: five Delta Lake tables, their schemas, opening and migration, one reader per
table, the skip decision (the plan), the run's commit and its recovery."""
