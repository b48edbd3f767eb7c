from __future__ import annotations

from gladd.policies.locate import locate, nearest

TEXT = '''# comment
top = 1
[a]
b = "x"   # trailing
"quoted.key" = 2
c.d = 3
arr = [
  "one",
  "two",
]
after = 4
inline = { x = 1, y = { z = "s,}" }, w = [1, 2] }
text = """
not = a key
"""
last = 5

[[jobs]]
name = "first"
[[jobs]]
name = "second"
[tasks."cloud.upload"]
timeout = "1m"
'''


def test_locates_keys_of_every_toml_shape() -> None:
    pos = locate(TEXT)
    assert pos[("top",)] == (2, 7)
    assert pos[("a",)] == (3, 1)
    assert pos[("a", "b")] == (4, 5)
    assert pos[("a", "quoted.key")] == (5, 16)
    assert pos[("a", "c", "d")] == (6, 7)
    assert pos[("a", "arr")] == (7, 7)
    assert pos[("a", "after")] == (11, 9)
    assert pos[("a", "inline", "x")] == (12, 16)
    assert pos[("a", "inline", "y", "z")] == (12, 29)
    assert pos[("a", "inline", "w")] == (12, 42)
    assert ("a", "not") not in pos
    assert pos[("a", "last")] == (16, 8)
    assert pos[("jobs", 0, "name")] == (19, 8)
    assert pos[("jobs", 1, "name")] == (21, 8)
    assert pos[("tasks", "cloud.upload", "timeout")] == (23, 11)


def test_nearest_falls_back_to_the_closest_written_parent() -> None:
    pos = locate(TEXT)
    assert nearest(pos, ("a", "missing")) == (3, 1)
    assert nearest(pos, ("nowhere",)) is None
