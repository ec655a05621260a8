"""Make untrusted text safe to print: control, bidi and invisible characters become visible escapes."""

from __future__ import annotations

import re
import unicodedata

# Cc: C0, DEL and C1 controls (ESC starts terminal sequences, \r overwrites a line);
# Cf: format characters (bidi overrides and isolates, zero-width spaces and joiners, BOM);
# Zl, Zp: the line and paragraph separators U+2028/U+2029; Cs: lone surrogates, which
# cannot even be encoded for output.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Runs of anything but printable ASCII are candidates; most text never reaches the callback.
_CANDIDATES = re.compile(r"[^\x20-\x7e]+")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, *, keep_tabs: bool = True) -> str:
    """text with every unsafe character escaped (\\x1b, \\u202e), keeping line breaks.

    A newline (or a \\r\\n pair) stays, so a multi-line diff reads as lines; a lone \\r is
    escaped, as it would let a line overwrite itself. Tabs stay unless keep_tabs is False.
    """
    keep = "\n\t" if keep_tabs else "\n"
    return _CANDIDATES.sub(lambda match: _visible(match.group(), keep), text)


def printable_line(text: str) -> str:
    """text escaped for use inside one line (a key, a name): line breaks and tabs escaped too."""
    return _CANDIDATES.sub(lambda match: _visible(match.group(), ""), text)


def _visible(run: str, keep: str) -> str:
    if run.isprintable():  # letters, marks, symbols, most spaces: nothing to escape, at C speed
        return run
    out = []
    for index, char in enumerate(run):
        crlf = char == "\r" and run[index + 1 : index + 2] == "\n"
        out.append(char if char in keep or (crlf and "\n" in keep) else _escape(char))
    return "".join(out)


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clipped(text: str, most: int) -> str:
    """text, or its first most - 3 characters and "..." when it is longer than most."""
    return text if len(text) <= most else text[: most - 3] + "..."
