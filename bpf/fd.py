# SPDX-License-Identifier: GPL-2.0-only
"""FdOwner: the base of every object that owns a kernel fd (maps, programs, links).

It closes the fd once, on close(), at the end of a `with` block, or when collected, so
nothing ksnoop creates outlives its owner: no pins, and a dead process detaches everything.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self


class Closing:
    """A `with` block closes it: for anything with a close() that owns kernel resources."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FdOwner(Closing):
    _fd: int | None = None
    _what = "object"  # for the message when a closed object is used

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self._what} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def _state(self) -> str:
        """For __repr__: `closed` or `fd=N`."""
        return "closed" if self._fd is None else f"fd={self._fd}"

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def detach_fd(self) -> int:
        """The fd, which this object stops owning: the caller (another owner) closes it."""
        fd = self.fd
        self._fd = None
        return fd

    def __del__(self) -> None:
        self.close()
