"""Golden stored histories and records: see ``make_golden.py`` and ``tests/conformance/test_golden.py``."""
