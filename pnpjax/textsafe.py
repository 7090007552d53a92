"""Text from users (layout and point names, units, paths) placed in the reports pnpjax writes.

Generated files carry such strings as data, never as markup or code: JSON files through
``json.dumps``; terminal tables and Markdown through the helpers here, so a name can neither add
a line to a table, nor close a code fence, nor inject HTML into a rendered Markdown page.
"""

from __future__ import annotations

import html
import re


def one_line(s: object) -> str:
    """Printable on one line: control and line/paragraph separator characters become escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(s))


def md_cell(s: object) -> str:
    """One Markdown table cell: one line, `|` escaped, HTML special characters as entities."""
    return html.escape(one_line(s), quote=False).replace("|", "\\|")


def _longest_backtick_run(text: str) -> int:
    return max((len(r) for r in re.findall("`+", text)), default=0)


def md_fence(text: str, info: str = "") -> str:
    """text inside a backtick fence longer than any backtick run in it (so it cannot be closed early)."""
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{fence}{one_line(info)}\n{text}\n{fence}"


def md_code(text: str) -> str:
    """text as one Markdown code span: one line, in a backtick run longer than any inside it."""
    text = one_line(text)
    longest = _longest_backtick_run(text)
    ticks = "`" * (longest + 1)
    return f"{ticks} {text} {ticks}" if longest else f"{ticks}{text}{ticks}"
