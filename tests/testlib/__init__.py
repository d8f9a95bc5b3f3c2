"""Helpers shared by Crucible's test suites (importable because pytest puts ``tests/``
on ``sys.path`` when it loads ``tests/conftest.py``)."""
