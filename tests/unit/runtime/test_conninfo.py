"""runtime.datastore.conninfo_string: libpq's key=value syntax, quoted where it must be."""

from __future__ import annotations

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.runtime.datastore import conninfo_string


def test_plain_values_stay_plain_and_awkward_ones_are_quoted() -> None:
    text = conninfo_string({"host": "db", "password": "a b'c\\d", "sslrootcert": "/p/with space.pem", "options": ""})
    assert text == "host=db password='a b\\'c\\\\d' sslrootcert='/p/with space.pem' options=''"


@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")))
def test_libpq_reads_back_every_value(value: str) -> None:
    parsed = psycopg.conninfo.conninfo_to_dict(conninfo_string({"host": "db", "password": value}))
    assert parsed == {"host": "db", "password": value}
