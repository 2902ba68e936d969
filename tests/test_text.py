"""core.text: file names of any encoding shown, printed on one line, and kept exactly."""

from __future__ import annotations

import os

from core.text import display, is_text, name_bytes, printable


def test_names_that_are_not_utf8_are_shown_with_the_replacement_character_and_kept_exactly():
    latin1 = os.fsdecode(b"/photos/latin1_\xe9t\xe9.jpg")
    assert not is_text(latin1) and is_text("/photos/\u00e9t\u00e9 \U0001f600.jpg")
    assert display(latin1) == "/photos/latin1_\ufffdt\ufffd.jpg"
    assert display(latin1).encode("utf-8")  # valid text: SQLite, Qt and terminals take it
    assert name_bytes(latin1) == b"/photos/latin1_\xe9t\xe9.jpg" and display(b"a\xffb") == "a\ufffdb"


def test_printable_names_are_one_line_and_cannot_drive_a_terminal():
    assert printable("two\nlines\tand\r\x1b[31mred\x7f\x85.jpg") == "two\\nlines\\tand\\r\\x1b[31mred\\x7f\\x85.jpg"
    assert printable("exe\u202egpj.jpg") == "exe\\u202egpj.jpg"  # a right-to-left override would reverse it
    assert printable("caf\u00e9 \U0001f600 \u00a0ok.jpg") == "caf\u00e9 \U0001f600 \u00a0ok.jpg"  # printable text stays
    assert printable(os.fsdecode(b"x\xe9\n")) == "x\ufffd\\n"
