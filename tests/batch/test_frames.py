"""Column-wise JSON and COPY encoding gives exactly the lists, whatever the ids contain."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.frames import Where, _first_repeated_item, copy_lines, from_python, json_lists

ids = st.text(min_size=1, max_size=12)
scores = st.floats(allow_nan=False, allow_infinity=False, width=64)
lists = st.lists(st.fixed_dictionaries({"id": ids, "score": scores}), min_size=1, max_size=6)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(ids, lists), min_size=1, max_size=8))
def test_json_lists_decode_to_the_input(rows: list[tuple[str, list[dict[str, object]]]]) -> None:
    batch = from_python(rows, 1, Where("<t>"))
    encoded, _ = json_lists(batch)
    for (_, items), text in zip(rows, encoded.to_pylist(), strict=True):
        decoded = orjson.loads(text)
        assert [d["id"] for d in decoded] == [i["id"] for i in items]
        assert [d["score"] for d in decoded] == [i["score"] for i in items]


def test_copy_lines_escape_tabs_newlines_and_backslashes() -> None:
    rows = [("u\t1", [{"id": 'a"\\b\nc', "score": 0.5}])]
    line = copy_lines(from_python(rows, 7, Where("<t>")))
    unit, items, row = line.rstrip(b"\n").split(b"\t")
    assert unit == b"u\\t1"
    assert row == b"7"
    # COPY's text format turns "\\" back into "\"; what remains is the JSON of the list.
    assert orjson.loads(items.replace(b"\\\\", b"\\")) == [{"id": 'a"\\b\nc', "score": 0.5}]


@settings(deadline=None, max_examples=100)
@given(st.lists(st.lists(st.sampled_from("abcde"), min_size=1, max_size=5), min_size=1, max_size=8))
def test_the_first_repeated_item_is_the_first_one_seen_again_in_its_list(
    id_lists: list[list[str]],
) -> None:
    rows = [(f"u{i}", [{"id": x, "score": 1.0} for x in ids]) for i, ids in enumerate(id_lists)]
    batch = from_python(rows, 1, Where("<t>"))
    expected, pos = None, 0
    for ids in id_lists:  # the naive rule: per list, the first id already seen in that list
        seen: set[str] = set()
        for k, x in enumerate(ids):
            if x in seen and expected is None:
                expected = pos + k
            seen.add(x)
        pos += len(ids)
    assert _first_repeated_item(batch) == expected
