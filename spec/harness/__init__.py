"""The harness behind ``python -m spec``: format, PKI, upstreams, gateway control, clients, checks.

Standard library plus trustme, cryptography and PyYAML; nothing here imports ``trio_gw``,
so the suite judges the gateway only through its processes, files and sockets.
"""
