"""gateway/response_cycle.py's header check against uvicorn's own (the served bytes: test_server.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from gateway.response_cycle import check_headers

# Pieces of header lines (line breaks, separators, control and delimiter bytes, ordinary
# text), so that a value or name forming further lines is a likely draw.
TOKENS = [
    b"a",
    b"Z9",
    b"-",
    b": ",
    b"\r\n",
    b"\r",
    b"\n",
    b"\t",
    b" ",
    b":",
    b"\x00",
    b"\x7f",
    b"\x80",
    b'"',
]
piece = st.lists(st.sampled_from(TOKENS), max_size=6).map(b"".join)
headers = st.lists(st.tuples(piece, piece), max_size=4)


def uvicorn_accepts(pairs: list[tuple[bytes, bytes]]) -> bool:
    return all(not HEADER_RE.search(n) and not HEADER_VALUE_RE.search(v) for n, v in pairs)


@given(headers)
def test_a_block_is_accepted_exactly_when_uvicorn_accepts_each_header(pairs) -> None:
    try:
        check_headers([n for n, _ in pairs], [v for _, v in pairs])
    except RuntimeError:
        assert not uvicorn_accepts(pairs)
    else:
        assert uvicorn_accepts(pairs)


@pytest.mark.parametrize(
    "pairs",
    [
        [(b"x-request-id", b"a\r\nset-cookie: stolen=1")],
        [(b"x-request-id", b"a\nset-cookie: stolen=1")],
        [(b"x-request-id", b"a\rset-cookie: stolen=1")],
        [(b"x-a: b\r\nset-cookie", b"stolen=1")],
        [(b"x-a: b", b"c")],  # a name that would read as another name and value
        [(b"content-type", b"application/json"), (b"x-request-id", b"id\r\n\r\n<html>")],
    ],
)
def test_a_header_that_would_add_a_line_is_refused(pairs) -> None:
    with pytest.raises(RuntimeError):
        check_headers([n for n, _ in pairs], [v for _, v in pairs])
