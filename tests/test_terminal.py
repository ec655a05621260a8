"""terminal: text from the bucket or the catalog prints as what it is, never as terminal commands."""

from __future__ import annotations

import unicodedata

import pytest

from pipeline_sync import cli
from pipeline_sync.terminal import printable, printable_line

UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("svc\x1b[2K\x1b[1Gsafe", "svc\\x1b[2K\\x1b[1Gsafe"),  # clear the line, back to column 1
        ("DELETE legacy\rUPDATE legacy", "DELETE legacy\\rUPDATE legacy"),  # \r overwrites the line
        (
            "x\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\",
            "x\\x1b]8;;https://evil\\x1b\\link\\x1b]8;;\\x1b\\",
        ),
        ("\x9b2K", "\\x9b2K"),  # C1 CSI: ESC [ in one byte
        ("a\x85b", "a\\x85b"),  # C1 next-line
        ("bell\x07\x00del\x7f\x08", "bell\\x07\\x00del\\x7f\\x08"),
        ("exe.\u202efdp", "exe.\\u202efdp"),  # right-to-left override: shows as "exe.pdf"
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # bidi isolates
        ("a\u200bb\u200cc\u200dd\u200ee\u200ff", "a\\u200bb\\u200cc\\u200dd\\u200ee\\u200ff"),  # zero-width
        ("\ufeffkey", "\\ufeffkey"),
        ("x\u00ady", "x\\xady"),  # soft hyphen: invisible
        ("tag\U000e0041", "tag\\U000e0041"),  # Unicode tag characters: invisible
        ("\ud800lone", "\\ud800lone"),  # a lone surrogate cannot even be encoded
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("café 日本 🎉 a\u00a0b ~", "café 日本 🎉 a\u00a0b ~"),  # printable text stays as it is
    ],
)
def test_hostile_text_is_escaped_in_both_forms(hostile: str, shown: str) -> None:
    assert printable(hostile) == shown
    assert printable_line(hostile) == shown


@pytest.mark.parametrize(
    ("text", "multi_line", "one_line"),
    [
        ("- a\n+ b\n", "- a\n+ b\n", "- a\\n+ b\\n"),
        ("- a\r\n+ b\r\n", "- a\r\n+ b\r\n", "- a\\r\\n+ b\\r\\n"),
        ("\tindented", "\tindented", "\\tindented"),
        ("line\r", "line\\r", "line\\r"),
        ("\r\n\r", "\r\n\\r", "\\r\\n\\r"),
    ],
)
def test_line_breaks_stay_in_printable_only(text: str, multi_line: str, one_line: str) -> None:
    assert printable(text) == multi_line
    assert printable_line(text) == one_line


def test_tabs_escaped_when_asked() -> None:
    assert printable("a\tb\nc", keep_tabs=False) == "a\\tb\nc"


def test_no_unsafe_character_survives() -> None:
    """Every code point: what comes out holds nothing a terminal acts on and encodes as UTF-8."""
    everything = "".join(map(chr, range(0x110000)))
    unsafe = {char for char in everything if unicodedata.category(char) in UNSAFE}
    for shown in (printable_line(everything), printable(everything).replace("\n", "").replace("\t", "")):
        assert unsafe.isdisjoint(shown)
        shown.encode("utf-8")


def test_an_escape_is_visible_text() -> None:
    """The escape names the character: a reviewer can tell \\u202e from \\u202d."""
    assert printable_line("\u202e") != printable_line("\u202d")
    assert printable_line("\u202e").isascii() and printable_line("\u202e").isprintable()


@pytest.mark.parametrize(
    "messages",
    [
        ["a plain line", "  an indented one"],
        ["ends in a carriage return\r", "\nstarts with a line break"],
        ["\x1b[2K", "\u202e", "x\r\ny", "", "tab\there"],
        ["\r", "\n", "\r\n", "\n\r"],
    ],
)
def test_a_plan_printed_at_once_is_the_plan_printed_line_by_line(
    messages: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """cli._echo_lines escapes each message on its own, as echo does: joining first would turn a
    message's final \\r and the next line break into a \\r\\n pair, which printable keeps."""
    for message in messages:
        cli.echo(message)
    one_by_one = capsys.readouterr().out
    cli._echo_lines(messages)
    assert capsys.readouterr().out == one_by_one
