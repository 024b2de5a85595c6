"""twinseek: reasoning text-to-video retrieval over digital twins."""

from __future__ import annotations

__version__ = "0.1.0"
