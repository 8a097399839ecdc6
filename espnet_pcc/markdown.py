"""The one Markdown table renderer of the package's reports (stage 9's RESULTS.md, the
study's, ESPnet's per-model scoring tables)."""
from __future__ import annotations

from typing import Sequence


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: ``head`` and one line per row (cells as given)."""
    lines = ["|" + "|".join(head) + "|", "|---" * len(head) + "|"]
    return "\n".join(lines + ["|" + "|".join(map(str, r)) + "|" for r in rows])


__all__ = ["table"]
