"""Text from users (layout and point names, units, paths) placed in the reports pnpjax writes.

Generated files carry such strings as data, never as markup or code: JSON files through
``json.dumps``; terminal tables and Markdown through the helpers here, so a name can neither add
a line to a table, nor close a code fence, nor inject HTML into a rendered Markdown page.
"""

from __future__ import annotations

import html


def one_line(s: object) -> str:
    """Printable on one line: control and line/paragraph separator characters become escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(s))


def md_cell(s: object) -> str:
    """One Markdown table cell: one line, `|` escaped, HTML special characters as entities."""
    return html.escape(one_line(s), quote=False).replace("|", "\\|")


def md_fence(text: str, info: str = "") -> str:
    """text inside a backtick fence longer than any backtick run in it (so it cannot be closed early)."""
    longest, run = 0, 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{one_line(info)}\n{text}\n{fence}"
