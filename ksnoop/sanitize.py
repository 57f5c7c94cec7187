# SPDX-License-Identifier: GPL-2.0-only
"""Make text that came from the kernel (BTF names, comms, char arrays) safe for a terminal.

Control characters (C0, DEL, C1) become \\xNN escapes, so no kernel string can move the
cursor, change colours or set the window title. Rich markup is escaped where rich prints.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f]")
# Newlines and tabs that ksnoop itself composed into multi-line text (layouts) may stay.
_UNSAFE_IN_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: "re.Match[str]") -> str:
    return f"\\x{ord(match.group()):02x}"


def sanitize(text: str) -> str:
    """`text` with every control character written as a visible \\xNN escape."""
    return _UNSAFE.sub(_escape, text)


def sanitize_layout(text: str) -> str:
    """Like sanitize, but keeps the newlines and tabs of multi-line text ksnoop laid out."""
    return _UNSAFE_IN_LAYOUT.sub(_escape, text)
