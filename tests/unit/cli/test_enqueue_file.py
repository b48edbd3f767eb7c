"""Reading ``gladd tasks enqueue --from-file``: JSON Lines, each value with its line."""

from __future__ import annotations

from gladd.cli.enqueue_args import read_json_lines


def test_blank_lines_are_skipped_and_line_numbers_kept() -> None:
    values, problems = read_json_lines(b'{"kind": "a"}\n\n  \r\n[1]\r\n"x"')
    assert values == [(1, {"kind": "a"}), (4, [1]), (5, "x")]
    assert problems == []


def test_every_line_that_is_not_json_is_named() -> None:
    data = b'{"kind":\nNaN\n\xff\n' + b"[" * 100_000 + b"\n{}\n"
    values, problems = read_json_lines(data)
    assert values == [(5, {})]
    assert [line for line, _ in problems] == [1, 2, 3, 4]
    assert problems[0][1].startswith("not JSON: Expecting value")
    assert problems[1][1] == "not JSON: NaN is not a JSON number"
    assert problems[2][1].startswith("not JSON: 'utf-8' codec can't decode")
    assert problems[3][1] == "not JSON: nested too deeply to decode"
