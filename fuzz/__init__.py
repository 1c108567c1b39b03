"""Fuzz harnesses for trio-gw (see ``fuzz/README.md``); never imported by ``trio_gw``."""
