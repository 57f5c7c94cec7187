# SPDX-License-Identifier: GPL-2.0-only
"""The one exception the BTF library raises, for corrupt data and failed lookups alike."""

from __future__ import annotations

from typing import Optional, Sequence


class BTFError(Exception):
    """Corrupt or truncated BTF, or a name or id that is not there.

    `offset` is a byte offset into the BTF blob and `type_id` the type being
    read, when either is known; both appear in the message, as libbpf writes them.
    """

    def __init__(self, message: str, *, offset: Optional[int] = None, type_id: Optional[int] = None):
        where = []
        if type_id is not None:
            where.append(f"[{type_id}]")
        if offset is not None:
            where.append(f"at offset {offset}")
        super().__init__(f"{message} ({' '.join(where)})" if where else message)
        self.offset = offset
        self.type_id = type_id


class BTFLookupError(BTFError, KeyError):
    """A name, id or member that the BTF does not have; `suggestions` holds the closest real ones."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()):
        BTFError.__init__(self, message)
        self.suggestions = tuple(suggestions)

    def __str__(self) -> str:
        return str(self.args[0])
