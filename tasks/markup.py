"""Guard for the HTML page parsers (`tasks.imdb`, `tasks.search`): cap the nesting depth.

lexbor's tree builder is quadratic in nesting depth for some tags (a ``<div>`` start tag
looks for an open ``<p>`` through the whole stack of open elements, so does a stray end tag
for its name): 50,000 nested ``<div>`` take seconds, a 20 MiB page of them hours.
`limit_nesting` scans the markup once, linearly, with a rough model of the HTML tree
builder's stack of open elements, and drops the start tags (and their end tags) that would
open an element deeper than `MAX_DEPTH` — as browsers do (Blink caps the depth at 512), the
content of such elements lands at the cap instead. Pages nested no deeper than the cap, all
real ones, are returned unchanged (the same ``str`` object), so they parse identically.

The model errs towards counting too deep, never too shallow: an element is closed (by an
end tag, or implicitly, as ``<li>`` closes the open ``<li>``) only where the tree builder
surely closes it too, so no markup can hide its depth. Formatting elements (``<b>``, ``<a>``
...) that are closed implicitly are reopened by the tree builder at the next tag (the
"active formatting elements"): the model reopens them too, and drops formatting start tags
once `MAX_FORMATTING` of them are active, since every reopening copies them all (quadratic
in their number). Not modelled: the ``<tbody>``/``<tr>`` the tree builder adds itself, at
most two per ``<table>``, which the model counts.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Any

#: Deepest element kept; real pages (IMDb, Bing, Google, DuckDuckGo) nest 30-60 deep.
MAX_DEPTH = 256
#: Most active formatting elements (unclosed ``<b>``, ``<font>`` ...) kept per table cell.
MAX_FORMATTING = 64

# A start or end tag: '/', its name and the rest up to its '>' (quoted attribute values may
# hold '>'; no rest when the tag never ends), or the start of a comment. Possessive, so a
# tag that never ends costs one linear pass.
_TOKEN = re.compile(
    r"""<(/?)([A-Za-z][^\t\n\f\r />]*+)((?:[^>"']++|"[^"]*+"|'[^']*+')*+>)?|<!--"""
)

_VOID = frozenset(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param "
    "source track wbr".split()
)
# Raw text: no tags inside, the content runs to the matching end tag.
_RAW = frozenset("script style textarea title xmp iframe noembed noframes".split())
_RAW_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW}
_IGNORED = _VOID | {"html", "head", "body"}  # never on the stack (html/head/body are merged)
_FOREIGN = frozenset(("svg", "math"))
# Where SVG/MathML content holds HTML again.
_INTEGRATION = frozenset("foreignobject desc title mi mo mn ms mtext annotation-xml".split())
# HTML start tags that end SVG/MathML content (<font> only with color, face or size).
_BREAKOUT = frozenset(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i "
    "img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u "
    "ul var".split()
)
_FONT_BREAKOUT = re.compile(r"[\s/](?:color|face|size)\s*=", re.IGNORECASE)
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_FORMATTING = frozenset(
    "a b big code em font i nobr s small strike strong tt u".split()
)
_MARKERS = frozenset("applet object marquee template td th caption".split())
_TABLE_PARTS = frozenset("caption colgroup tbody thead tfoot tr td th".split())
# Start tags that close an open <p> (in button scope).
_CLOSES_P = frozenset(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 "
    "h6 pre listing form li dd dt plaintext table".split()
)
# The HTML spec's "special" elements and scope boundaries (those that can be on the stack).
_SPECIAL = frozenset(
    "address applet article aside blockquote button caption center colgroup dd details dialog "
    "dir div dl dt fieldset figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 header "
    "hgroup li listing main marquee menu nav noscript object ol p plaintext pre search section "
    "select summary table tbody td template tfoot th thead tr ul mi mo mn ms mtext "
    "annotation-xml foreignobject desc".split()
)
_SCOPE = frozenset(
    "applet caption marquee object table td th template mi mo mn ms mtext annotation-xml "
    "foreignobject desc select".split()  # lexbor's <select> keeps most end tags inside
)
# Barrier kinds: an element of a kind above the target stops the tree builder's search.
_K_SPECIAL, _K_SCOPE, _K_BUTTON, _K_LIST, _K_TABLE, _K_LI, _K_HEADING = range(7)
_KIND_SETS = (
    _SPECIAL,
    _SCOPE,
    _SCOPE | {"button"},
    _SCOPE | {"ol", "ul"},
    frozenset(("table", "template", "select")),
    _SPECIAL - {"address", "div", "p"},
    _HEADINGS,
)
# Special as HTML elements (the SVG/MathML names above are special only as such, but the
# model treats them as barriers anywhere: that only keeps more open).
_SPECIAL_HTML = _SPECIAL - _INTEGRATION
_KINDS: dict[str, tuple[int, ...]] = {
    name: tuple(k for k, kind in enumerate(_KIND_SETS) if name in kind)
    for name in frozenset().union(*_KIND_SETS)
}


def _top_below(indices: list[int] | None, size: int) -> int:
    """The largest of the sorted `indices` below `size`, or -1."""
    if not indices:
        return -1
    i = bisect_left(indices, size)
    return indices[i - 1] if i else -1


def _in_scope(indices: list[int] | None, barriers: list[int], size: int) -> int:
    """Index of the topmost element (`indices`) below `size` with no barrier above it, or -1."""
    top = _top_below(indices, size)
    return top if top >= 0 and _top_below(barriers, size) <= top else -1


class _Segment:
    """Active formatting elements after the last marker (one per open table cell ...)."""

    __slots__ = ("entries", "live", "pending", "by_key")

    def __init__(self) -> None:
        # entry: [name, key, state]; state 1 open, 0 closed implicitly (to reopen), -1 gone
        self.entries: list[list[Any]] = []
        self.live = 0  # entries not gone
        self.pending = 0  # entries to reopen
        self.by_key: dict[str, list[list[Any]]] = {}

    def forget(self, entry: list[Any]) -> None:
        if entry[2] == 0:
            self.pending -= 1
        if entry[2] >= 0:
            self.live -= 1
        entry[2] = -1
        if len(self.entries) > 2 * self.live + 16:  # compact now and then
            self.entries = [e for e in self.entries if e[2] >= 0]

    def last(self, name: str) -> list[Any] | None:
        for entry in reversed(self.entries):
            if entry[2] >= 0 and entry[0] == name:
                return entry
        return None


class _Model:
    """The tree builder's stack of open elements and active formatting elements, roughly."""

    def __init__(self) -> None:
        self.stack: list[str] = []  # open elements, outermost first (no html/head/body)
        self.entry: list[list[Any] | None] = []  # the formatting entry of each stack element
        self.foreign: list[bool] = []  # whether each stack element is an SVG/MathML one
        self.where: dict[str, list[int]] = {}  # name -> its indices in `stack`
        self.barriers: list[list[int]] = [[] for _ in _KIND_SETS]  # kind -> indices
        self.form_open = False  # the tree builder's form element pointer
        self.segments = [_Segment()]

    def leave_foreign(self) -> None:
        """Close the SVG/MathML content around the current node, as an HTML tag in it does."""
        size = len(self.stack)
        while size and self.foreign[size - 1] and self.stack[size - 1] not in _INTEGRATION:
            size -= 1
        self.pop_to(size)

    def in_foreign(self) -> bool:
        """Whether the current node is SVG/MathML content (where '/>' closes an element)."""
        return bool(self.stack) and self.foreign[-1] and self.stack[-1] not in _INTEGRATION

    def push(self, name: str, entry: list[Any] | None = None, foreign: bool = False) -> None:
        index = len(self.stack)
        self.stack.append(name)
        self.entry.append(entry)
        self.foreign.append(foreign)
        self.where.setdefault(name, []).append(index)
        for k in _KINDS.get(name, ()):
            self.barriers[k].append(index)
        if foreign:
            pass
        elif name == "form":
            self.form_open = True
        elif name in _MARKERS:
            self.segments.append(_Segment())

    def pop_to(self, size: int) -> None:
        stack = self.stack
        while len(stack) > size:
            name = stack.pop()
            entry = self.entry.pop()
            foreign = self.foreign.pop()
            self.where[name].pop()
            for k in _KINDS.get(name, ()):
                self.barriers[k].pop()
            if foreign:
                pass
            elif name in _MARKERS and len(self.segments) > 1:
                self.segments.pop()
            if entry is not None and entry[2] == 1:
                entry[2] = 0
                self.segments[-1].pending += 1

    def reopen(self) -> None:
        """Reopen the formatting elements closed implicitly, as the next tag or text does."""
        segment = self.segments[-1]
        if not segment.pending:
            return
        for entry in segment.entries:
            if entry[2] == 0:
                entry[2] = 1
                self.push(entry[0], entry)
        segment.pending = 0

    def open_formatting(self, name: str, key: str) -> list[Any] | None:
        """The entry for a new formatting element; None: too many active, drop the tag."""
        segment = self.segments[-1]
        if name == "a" or name == "nobr":  # a new <a> closes the open one (if any)
            old = segment.last(name)
            if old is not None:
                segment.forget(old)
        same = segment.by_key.setdefault(key, [])
        same[:] = [e for e in same if e[2] >= 0]
        if len(same) >= 3:  # the "Noah's Ark" clause keeps three alike
            segment.forget(same.pop(0))
        if segment.live >= MAX_FORMATTING:
            return None
        entry = [name, key, 1]
        segment.entries.append(entry)
        segment.live += 1
        same.append(entry)
        return entry

    def closed_size(self, name: str) -> int:
        """The stack's size once a start tag `name` closed what it closes; -1: ignored.

        In SVG/MathML content, only for an HTML tag that ends it (`_BREAKOUT`).
        """
        stack, where, barriers = self.stack, self.where, self.barriers
        size = len(stack)
        if self.in_foreign():  # an HTML tag: out of the SVG/MathML content first
            while size and self.foreign[size - 1] and stack[size - 1] not in _INTEGRATION:
                size -= 1
        if name in _FOREIGN:
            return size
        if name in _TABLE_PARTS:  # closes all in the table; ignored outside tables
            table = _top_below(where.get("table"), size)
            template = _top_below(where.get("template"), size)
            if table > template:
                return table + 1
            return size if template >= 0 and template == size - 1 else -1
        if name == "form" and self.form_open and not where.get("template"):
            return -1  # ignored while a form is open
        if name == "li" or name == "dd" or name == "dt":
            stop = _top_below(barriers[_K_LI], size)
            if stop >= 0 and (
                stack[stop] == name or (name != "li" and stack[stop] in ("dd", "dt"))
            ):
                size = stop
        elif name == "button":
            button = _in_scope(where.get("button"), barriers[_K_SCOPE], size)
            if button >= 0:
                size = button
        if name in _CLOSES_P:
            p = _in_scope(where.get("p"), barriers[_K_BUTTON], size)
            if p >= 0:
                size = p
        if size and (
            (name in _HEADINGS and stack[size - 1] in _HEADINGS)
            or ((name == "option" or name == "optgroup") and stack[size - 1] == "option")
        ):
            size -= 1
        return size

    def end_target(self, name: str) -> int:
        """Index of the element an end tag `name` closes (popping all above it); -1: none."""
        where, barriers = self.where, self.barriers
        size = len(self.stack)
        if name == "form":
            self.form_open = False  # the tree builder takes the form out wherever it is
            return size - 1 if size and self.stack[-1] == "form" else -1
        in_foreign = self.in_foreign()
        if name in _FORMATTING and not in_foreign:
            segment = self.segments[-1]
            entry = segment.last(name)
            if entry is not None:
                if entry[2] == 0:  # closed implicitly: forgotten, nothing to close
                    segment.forget(entry)
                    return -1
                target = _in_scope(where.get(name), barriers[_K_SPECIAL], size)
                if target >= 0 and self.entry[target] is entry:
                    segment.forget(entry)
                    return target
                return -1  # a special element inside (or out of scope): kept open here
        if in_foreign or name not in _SPECIAL_HTML:
            kind = _K_SPECIAL
        elif name in _HEADINGS:  # </h1> closes the innermost heading, <h2> or any
            headings = barriers[_K_HEADING]
            return _in_scope(headings[-1:], barriers[_K_SCOPE], size)
        elif name in _TABLE_PARTS or name == "table":
            kind = _K_TABLE
        elif name == "li":
            kind = _K_LIST
        elif name == "p":
            kind = _K_BUTTON
        else:
            kind = _K_SCOPE
        return _in_scope(where.get(name), barriers[kind], size)


def limit_nesting(text: str, max_depth: int = MAX_DEPTH) -> str:
    """`text` with start tags nested deeper than `max_depth` (and their end tags) removed.

    Linear in ``len(text)``; returns `text` itself when nothing is nested that deep.
    """
    if text.count("<") <= max_depth:
        return text
    model = _Model()
    overflow: list[str] = []  # elements dropped at the cap, still open
    overflow_open: dict[str, int] = {}
    cuts: list[tuple[int, int]] = []  # spans of `text` to remove
    skip_to = 0  # end of the comment or raw text being skipped
    for m in _TOKEN.finditer(text):
        start = m.start()
        if start < skip_to:
            continue
        end_tag, name, rest = m.groups()
        if name is None:  # comment: skip to its end (none: the rest is comment)
            skip_to = text.find("-->", m.end()) + 3
            if skip_to < 3:
                break
            continue
        if rest is None:  # a tag that never ends swallows the rest of the page
            break
        name = name.lower()
        if name in _IGNORED:
            if (name == "br" if end_tag else name in _BREAKOUT) and model.in_foreign():
                model.leave_foreign()
            continue
        end = m.end()
        if not end_tag:
            foreign = model.in_foreign() and not (
                name in _BREAKOUT or (name == "font" and _FONT_BREAKOUT.search(rest))
            )
            if name in _RAW and not foreign:
                raw_end = _RAW_END[name].search(text, end)
                if raw_end is None:
                    break
                skip_to = raw_end.start()
                continue
            if name == "plaintext" and not foreign:
                break  # the rest of the page is text
            if (foreign or name in _FOREIGN) and rest[-2:-1] == "/":
                continue  # self-closing in SVG/MathML (elsewhere '/>' is ignored)
            size = len(model.stack) if foreign else model.closed_size(name)
            if size < 0:
                continue
            if size >= max_depth:
                model.reopen()  # as the text after the dropped tag would
                cuts.append((start, end))
                overflow.append(name)
                overflow_open[name] = overflow_open.get(name, 0) + 1
                continue
            if overflow:  # what the kept tag closes, it closes with what was dropped above
                overflow.clear()
                overflow_open.clear()
            model.pop_to(size)
            model.reopen()
            entry = None
            if name in _FORMATTING and not foreign:
                entry = model.open_formatting(name, rest)
                if entry is None:
                    cuts.append((start, end))
                    continue
            model.push(name, entry, foreign or name in _FOREIGN)
            continue
        # end tag
        if name == "p" and model.in_foreign():
            model.leave_foreign()
        if overflow_open.get(name):
            cuts.append((start, end))
            while True:
                closed = overflow.pop()
                overflow_open[closed] -= 1
                if closed == name:
                    break
            continue
        target = model.end_target(name)
        if target < 0:
            continue  # stray or out of scope: ignored by the tree builder, kept open here
        model.pop_to(target)
        overflow.clear()  # elements dropped deeper than the one closed are closed with it
        overflow_open.clear()
    if not cuts:
        return text
    pieces: list[str] = []
    last = 0
    for start, end in cuts:
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
