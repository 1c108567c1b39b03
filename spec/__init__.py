"""trio-gw's conformance spec suite: data-driven scenarios run against a real gateway.

See ``spec/README.md`` for the scenario format and ``python -m spec --help``.
"""
