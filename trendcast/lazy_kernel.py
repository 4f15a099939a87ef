"""A Numba kernel compiled on first use, the one rule for every compiled path: none without
Numba or with ``TRENDCAST_NO_NUMBA=1``, when the caller takes its NumPy (or library) path that
gives the same bits. Compiling costs seconds, once per process, so it waits for a caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")


class LazyKernel(Generic[K]):
    """Call it for the kernel (built by ``build`` on the first call) or None."""

    def __init__(self, build: Callable[[], K]) -> None:
        self.build = build
        self.kernel: K | None = None
        self.tried = False

    def __call__(self) -> K | None:
        if not self.tried:
            self.tried = True
            from trendcast.config import get_settings

            if not get_settings().no_numba:
                try:
                    self.kernel = self.build()
                except ImportError:
                    self.kernel = None
        return self.kernel
