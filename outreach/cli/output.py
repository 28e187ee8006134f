"""How commands print: the shared `--format text|json` option (`--json` for short), tables with a header row that
never cut an id or an address, counts with the right plural, and record data made safe for a terminal.

Light on purpose (click and the standard library): `validate` uses it, and `import outreach.cli` stays fast; rich
is imported when a table is printed.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_HELP = "text: for people; json: for scripts (a list of objects, or one object; times in ISO 8601)."

# Piped output is never wrapped: a line as long as it needs (grep, cut and less -S see whole rows).
_UNLIMITED = 1_000_000
_FREE_TEXT_MIN = 10  # a free-text column narrower than this is folded no further: the table gets wider instead


def output_format(*choices: str, help: str = FORMAT_HELP) -> Callable[[F], F]:
    """`--format [text|json]` (or CHOICES, the default first: "text", "json", "github"), with `--json` the same as
    `--format json`. The command gets one parameter, `fmt`, the format asked for:

        @click.command()
        @output.output_format()
        def show(fmt: str) -> None: ...
    """
    kinds = choices or ("text", "json")
    if "json" not in kinds:
        raise ValueError("--json needs json among the choices")

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, fmt: str, as_json: bool, **kwargs: Any) -> Any:
            given = click.get_current_context().get_parameter_source("fmt") is click.core.ParameterSource.COMMANDLINE
            if as_json and given and fmt != "json":
                raise click.UsageError(f"--json means --format json: give it or --format {fmt}, not both")
            return f(*args, fmt="json" if as_json else fmt, **kwargs)

        command = click.option("--json", "as_json", is_flag=True, help="The same as --format json.")(command)
        command = click.option("--format", "fmt", type=click.Choice(kinds), default=kinds[0], show_default=True,
                               help=help)(command)  # fmt: skip
        return cast(F, command)

    return decorate


# What a record field, a subject or an address must not send to a terminal as it is: C0 and C1 control characters
# (ESC starts colour, cursor and OSC sequences: window titles, hyperlinks, clipboard writes), DEL, and the Unicode
# marks that reorder text (bidirectional overrides and isolates).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_LINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: object, *, lines: bool = False) -> str:
    """Text from the store (records, subjects, reasons) as a terminal may show it: every control character written
    out as its escape (ESC as `\\x1b`, a line break as `\\n`, U+202E as `\\u202e`), so data can neither move the
    cursor nor forge a line. With `lines`, line breaks stay (a table cell may span lines)."""
    return (_UNSAFE_BUT_LINES if lines else _UNSAFE).sub(_escape, str(text))


# JSON escapes C0 characters itself; these it writes as they are (ensure_ascii=False).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def json_safe(text: str) -> str:
    """JSON text (of json.dumps without ensure_ascii) with DEL, C1 controls and bidirectional marks as \\u escapes: the
    same JSON, and nothing a terminal acts on when it is printed."""
    return _UNSAFE_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 record`, `2 records`, `20,000 records` (`many`: the plural when it is not WORD + s)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None,
          free: Sequence[str] = (), numbers: Sequence[str] = ()) -> Table:  # fmt: skip
    """A table with a header row. Cells of the `free` columns (free text: subjects, details) fold to fit a
    terminal; the others (ids, addresses, states, times) are never wrapped, folded or cut. The `numbers` columns
    (counts) are aligned on the right. Cells and the title are shown as they are: rich markup in them is text
    (`[bold]` stays `[bold]`), and their control characters are written out (`visible`)."""
    from rich.table import Table
    from rich.text import Text

    unknown = {*free, *numbers} - set(columns)
    assert not unknown, f"{unknown} are not columns"
    found = Table(title=Text(visible(title, lines=True)) if title is not None else None)
    for name in columns:
        if name in free:
            found.add_column(name, overflow="fold")
        else:
            found.add_column(name, no_wrap=True, justify="right" if name in numbers else "left")
    for row in rows:
        found.add_row(*(Text(visible(cell, lines=True)) for cell in row))  # Text: never read as markup
    return found


def print_tables(*tables: Table) -> None:
    """Print tables on stdout: as wide as the terminal (wider when their ids and addresses need it), and on one
    line per row, however long, when stdout is not a terminal."""
    console = _console(tables)
    for t in tables:
        console.print(t)


def _console(tables: Sequence[Table]) -> Console:
    from rich.console import Console

    if not sys.stdout.isatty():
        return Console(width=_UNLIMITED)
    console = Console()
    need = max((_narrowest(t) for t in tables), default=0)
    return Console(width=need) if need > console.width else console


def _narrowest(t: Table) -> int:
    """The width under which rich would cut a cell that must stay whole: every unfolded column at its widest,
    free text at a few characters, with padding and borders."""
    from rich.cells import cell_len

    width = len(t.columns) + 1  # the borders
    for column in t.columns:
        cells = [str(column.header), *(str(c) for c in column.cells)]
        widest = max(max(cell_len(line) for line in c.splitlines() or [""]) for c in cells)
        width += (widest if column.no_wrap else min(widest, _FREE_TEXT_MIN)) + 2
    return width
