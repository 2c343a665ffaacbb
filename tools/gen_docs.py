"""`make docs`: rewrite the generated parts of the pages under docs/ in place.

What goes between the markers comes from tidings.docgen; this script only reads and
writes the pages. tests/docs fails when a committed page differs from what it would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tidings.docgen import PAGES, render_page

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    for page in PAGES:
        path = ROOT / page
        text = path.read_text(encoding="utf-8")
        updated = render_page(page, text)
        if updated == text:
            print(f"{page}: up to date")
        else:
            path.write_text(updated, encoding="utf-8")
            print(f"{page}: rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
