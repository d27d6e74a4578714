"""Assertions: declarative checks of records in a fixed vocabulary, mined from human labels,
chosen under coverage and false-failure bounds, and run as validators (docs/assertions.md)."""
