"""Guard for the HTML page parsers (`tv100.tasks.discover.imdb_pages`, `tv100.tasks.collect.bing`,
`tv100.tasks.collect.google`): cap the nesting depth.

lexbor's tree builder is quadratic in nesting depth for some tags (a ``<div>`` start tag
looks for an open ``<p>`` through the whole stack of open elements, so does a stray end tag
for its name): 50,000 nested ``<div>`` take seconds, a 20 MiB page of them hours.
`limit_nesting` scans the markup once, linearly, with a rough model of the HTML tree
builder's stack of open elements, and drops the start tags (and their end tags) that would
open an element deeper than `MAX_DEPTH` — as browsers do (Blink caps the depth at 512), the
content of such elements lands at the cap instead. Pages nested no deeper than the cap, all
real ones, are returned unchanged (the same ``str`` object), so they parse identically.

The model follows the tree-building rules that close elements (end tags in and out of
scope, ``<li>`` closing the open ``<li>``, ``<p>`` closed by block tags, table parts, the
implied ``<tbody>``/``<tr>``, SVG/MathML content and what ends it, lexbor's ``<select>``,
the "active formatting elements" reopened at the next tag ...) and errs towards counting too
deep, never too shallow: where it cannot tell what the tree builder closed (misnested
formatting elements, the "adoption agency"; a ``</form>`` inside other elements), the
elements concerned stay counted but are never taken for open ones again (*stale*), so no
markup can hide its depth. Formatting start tags are dropped too once `MAX_FORMATTING` are
active: each reopening copies them all. tests/hostile/test_hostile_parsers.py holds the
patterns that fuzzing the model against lexbor found, one per rule.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
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
_HTML, _SVG, _MATH = 0, 1, 2  # namespaces
_FOREIGN = {"svg": _SVG, "math": _MATH}
# Where SVG/MathML content holds HTML again (special elements and scope boundaries too).
_INTEGRATION: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset(("foreignobject", "desc", "title")),
    frozenset("mi mo mn ms mtext annotation-xml".split()),
)
# HTML start tags that end SVG/MathML content (<font> only with color, face or size).
_BREAKOUT = frozenset(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i "
    "img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u "
    "ul var".split()
)
_FONT_BREAKOUT = re.compile(r"[\s/](?:color|face|size)\s*=", re.IGNORECASE)
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
_MARKERS = frozenset("applet object marquee template td th caption".split())
_CELLS = frozenset("td th caption template".split())  # where a table's content is HTML again
_SECTIONS = frozenset(("tbody", "thead", "tfoot"))
_RUBY_PARTS = frozenset(("rb", "rtc", "rp", "rt"))
# Closed by "generate implied end tags" (for <rp>/<rt>: all but <rtc>).
_IMPLIED_END = frozenset("dd dt li optgroup option p rb rp rt rtc".split())
_IMPLIED_END_RT = _IMPLIED_END - {"rtc"}
_IMPLIED_END_OPTION = _IMPLIED_END - {"optgroup"}
_SELECT_CLOSERS = frozenset(("select", "input"))  # in lexbor's <select>: close it
_TABLE_PARTS = frozenset("caption colgroup tbody thead tfoot tr td th".split())
# Start tags that close an open <p> (in button scope).
_CLOSES_P = frozenset(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 "
    "h6 pre listing form li dd dt plaintext table hr xmp".split()
)
# The HTML spec's special elements and scope boundaries (those that can be on the stack).
_SPECIAL = frozenset(
    "address applet article aside blockquote button caption center colgroup dd details dialog "
    "dir div dl dt fieldset figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 header "
    "hgroup li listing main marquee menu nav noscript object ol p plaintext pre search section "
    "select summary table tbody td template tfoot th thead tr ul".split()
)
# End tags that close their element when it is in scope (those of other elements only when
# no special element is inside it).
_SCOPE_END = frozenset(
    "address article aside blockquote button center details dialog dir div dl fieldset "
    "figcaption figure footer header hgroup listing main menu nav ol pre search section "
    "summary ul dd dt applet marquee object select".split()
)
_SCOPE = frozenset(
    "applet caption marquee object table td th template select".split()
)  # lexbor's <select> keeps most end tags inside: a boundary here
# Kinds of elements the tree builder's searches of the stack stop at or look for.
_K_SPECIAL, _K_SCOPE, _K_BUTTON, _K_LIST, _K_TABLE, _K_LI, _K_HEADING, _K_CELL = range(8)
_KIND_SETS = (
    _SPECIAL,
    _SCOPE,
    _SCOPE | {"button"},
    _SCOPE | {"ol", "ul"},
    frozenset(("table", "template")),
    _SPECIAL - {"address", "div", "p"},
    _HEADINGS,
    _CELLS,
)
_HTML_KINDS: dict[str, tuple[int, ...]] = {
    name: tuple(k for k, kind in enumerate(_KIND_SETS) if name in kind)
    for name in frozenset().union(*_KIND_SETS)
}
_INTEGRATION_KINDS = (_K_SPECIAL, _K_SCOPE, _K_BUTTON, _K_LIST, _K_LI)


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
        # entry: [name, key, state, index]; state 1 open (at stack index), 0 closed implicitly
        # (to reopen), -1 gone
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
    """The tree builder's stack of open elements and active formatting elements, roughly.

    Where the model cannot tell what the tree builder closes (the "adoption agency" of
    misnested formatting elements, a ``</form>`` inside other elements), the elements it may
    have closed stay on the stack as *stale* ones: counted, but no search of the stack finds
    them, so none is taken for an open one (that would close the elements above it, which
    the tree builder keeps). Nor does the model close anything below a stale element (the
    tree builder may stop at it): what it would close turns stale instead.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []  # open elements, outermost first (no html/head/body)
        self.ns: list[int] = []  # their namespaces
        self.kinds: list[tuple[int, ...]] = []  # their kinds
        self.live: list[bool] = []  # False: stale
        self.stale: list[int] = []  # indices of the stale elements, ascending
        self.entry: list[list[Any] | None] = []  # their active formatting entries
        self.where: dict[str, list[int]] = {}  # name -> its indices in `stack` (not stale)
        self.barriers: list[list[int]] = [[] for _ in _KIND_SETS]  # kind -> indices
        self.form_open = False  # the tree builder's form element pointer
        self.segments = [_Segment()]
        self.implied: tuple[str, ...] = ()  # what the last closed_size() inserts first
        self.pushed = True  # whether the last closed_size()'s tag opens an element

    def in_foreign(self) -> bool:
        """Whether the current node is SVG/MathML content (where '/>' closes an element)."""
        return bool(self.stack) and self.ns[-1] != _HTML and (
            self.stack[-1] not in _INTEGRATION[self.ns[-1]]
        )

    def foreign_start(self, through_integration: bool = False) -> int:
        """Index of the outermost element of the SVG/MathML content at the top of the stack."""
        size = len(self.stack)
        ns, stack = self.ns, self.stack
        while size and ns[size - 1] != _HTML and (
            through_integration or stack[size - 1] not in _INTEGRATION[ns[size - 1]]
        ):
            size -= 1
        return size

    def push(self, name: str, ns: int, entry: list[Any] | None = None) -> None:
        index = len(self.stack)
        if ns == _HTML:
            kinds = _HTML_KINDS.get(name, ())
            if name == "form":
                self.form_open = True
            elif name in _MARKERS:
                self.segments.append(_Segment())
        else:
            kinds = _INTEGRATION_KINDS if name in _INTEGRATION[ns] else ()
        self.stack.append(name)
        self.ns.append(ns)
        self.kinds.append(kinds)
        self.live.append(True)
        self.entry.append(entry)
        if entry is not None:
            entry[3] = index
        self.where.setdefault(name, []).append(index)
        for k in kinds:
            self.barriers[k].append(index)

    def pop_to(self, size: int) -> None:
        stack = self.stack
        while len(stack) > size:
            name = stack.pop()
            ns = self.ns.pop()
            entry = self.entry.pop()
            kinds = self.kinds.pop()
            if not self.live.pop():
                self.stale.pop()
            else:
                for k in kinds:
                    self.barriers[k].pop()
                self.where[name].pop()
            if ns == _HTML and name in _MARKERS and len(self.segments) > 1:
                self.segments.pop()  # (stale or not: its formatting elements go with it)
            if entry is not None and entry[2] == 1:
                entry[2] = 0
                self.segments[-1].pending += 1

    def size_after(self, size: int) -> int:
        """The stack's size once closed to `size` (unchanged if a stale element is above)."""
        return len(self.stack) if self.stale and self.stale[-1] >= size else size

    def close_to(self, size: int) -> None:
        """Pop the stack to `size`, or where a stale element is above, mark all stale."""
        if self.stale and self.stale[-1] >= size:
            self.make_stale_from(size)
        else:
            self.pop_to(size)

    def make_stale(self, index: int) -> None:
        if not self.live[index]:
            return
        self.live[index] = False
        insort(self.stale, index)
        name = self.stack[index]
        self.where[name].remove(index)
        for k in self.kinds[index]:
            self.barriers[k].remove(index)

    def make_stale_from(self, index: int) -> None:
        for i in range(len(self.stack) - 1, index - 1, -1):
            self.make_stale(i)

    def reopen(self) -> None:
        """Reopen the formatting elements closed implicitly, as the next tag or text does."""
        segment = self.segments[-1]
        if not segment.pending:
            return
        for entry in segment.entries:
            if entry[2] == 0:
                entry[2] = 1
                self.push(entry[0], _HTML, entry)
        segment.pending = 0

    def open_formatting(self, name: str, key: str) -> list[Any] | None:
        """The entry for a new formatting element; None: too many active, drop the tag."""
        segment = self.segments[-1]
        same = segment.by_key.setdefault(key, [])
        same[:] = [e for e in same if e[2] >= 0]
        if len(same) >= 3:  # the "Noah's Ark" clause keeps three alike (the element stays)
            oldest = same.pop(0)
            if oldest[2] == 1:
                self.entry[oldest[3]] = None
            segment.forget(oldest)
        if segment.live >= MAX_FORMATTING:
            return None
        entry = [name, key, 1, -1]
        segment.entries.append(entry)
        segment.live += 1
        same.append(entry)
        return entry

    def adoption(self, entry: list[Any], size: int, start_tag: bool) -> int:
        """The "adoption agency" for an active formatting element's end tag (or a new <a>).

        Returns the size to pop the stack to; marks stale what the model cannot follow.
        """
        segment = self.segments[-1]
        if entry[2] == 0:  # not open: just forgotten
            segment.forget(entry)
            return size
        index = entry[3]
        if not self.live[index]:
            segment.forget(entry)
            return size
        if _top_below(self.barriers[_K_SCOPE], size) > index:  # not in scope: ignored
            if start_tag:  # (a new <a> takes the old one out anyway)
                self.entry[index] = None
                segment.forget(entry)
                self.make_stale(index)
            return size
        if _top_below(self.barriers[_K_SPECIAL], size) > index:  # a "furthest block"
            self.entry[index] = None
            segment.forget(entry)
            self.make_stale_from(index)
            return size
        self.entry[index] = None
        segment.forget(entry)
        return index

    def closed_size(self, name: str) -> int:
        """The stack's size once an HTML start tag `name` closed what it closes; -1: ignored.

        Sets `implied` to what the tree builder inserts before it. In SVG/MathML content,
        only for an HTML tag that ends it (`_BREAKOUT`).
        """
        stack, where, barriers = self.stack, self.where, self.barriers
        self.implied = ()
        self.pushed = True
        size = self.foreign_start() if self.in_foreign() else len(stack)
        if name in _FOREIGN:
            return size
        if name in _TABLE_PARTS or name == "col" or name == "table":
            table = _top_below(where.get("table"), size)
            cell = _top_below(barriers[_K_CELL], size)
            in_table = table > cell  # table content, not in a cell (nor a template)
            if name == "table":
                if in_table:
                    return table  # closes the open table
            elif table >= 0 and (in_table or stack[cell] != "template"):
                return self._table_part(name, table, size)
            else:
                template = _top_below(where.get("template"), size)
                if template < 0 or template != size - 1:
                    return -1  # ignored outside tables
                return size
        elif name == "form":
            if self.form_open and not where.get("template"):
                return -1  # ignored while a form is open
            table = _top_below(where.get("table"), size)
            if table > _top_below(barriers[_K_CELL], size):
                self.form_open = True  # in a table: inserted and closed at once
                return -1
        if name == "a" or name == "nobr":
            old = self.segments[-1].last(name)
            if old is not None and (name == "a" or old[2] == 1):
                if name == "a" or _top_below(barriers[_K_SCOPE], size) < old[3]:
                    size = self.adoption(old, size, start_tag=True)
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
        elif name in _RUBY_PARTS:
            if _in_scope(where.get("ruby"), barriers[_K_SCOPE], size) >= 0:
                implied = _IMPLIED_END if name in ("rb", "rtc") else _IMPLIED_END_RT
                while size and self.live[size - 1] and stack[size - 1] in implied:
                    size -= 1
        if name in _CLOSES_P:
            p = _in_scope(where.get("p"), barriers[_K_BUTTON], size)
            if p >= 0:
                size = p
        if name in _SELECT_CLOSERS or name == "option" or name == "optgroup":
            select = _in_scope(where.get("select"), barriers[_K_SCOPE], size)
            if select >= 0 and name in _SELECT_CLOSERS:
                self.pushed = name != "select"  # a <select> in one only closes it
                return select
            if select >= 0:
                implied = _IMPLIED_END if name == "optgroup" else _IMPLIED_END_OPTION
                while size and self.live[size - 1] and stack[size - 1] in implied:
                    size -= 1
            elif name != "select" and name != "input" and (
                size and self.live[size - 1] and stack[size - 1] == "option"
            ):
                size -= 1
        elif size and self.live[size - 1] and name in _HEADINGS and stack[size - 1] in _HEADINGS:
            size -= 1
        return size

    def _table_part(self, name: str, table: int, size: int) -> int:
        """A table part's start tag in a table: what it closes and the parts it implies."""
        stack = self.stack

        def at(i: int, names: frozenset[str] | tuple[str, ...]) -> bool:
            return i < size and self.live[i] and stack[i] in names

        if name in ("caption", "colgroup", "col", "tbody", "thead", "tfoot"):
            self.implied = ("colgroup",) if name == "col" else ()
            return table + 1
        section = at(table + 1, _SECTIONS)
        if name == "tr":
            if section:
                return table + 2
            self.implied = ("tbody",)
            return table + 1
        # td, th
        if section and at(table + 2, ("tr",)):
            return table + 3
        if section:
            self.implied = ("tr",)
            return table + 2
        self.implied = ("tbody", "tr")
        return table + 1

    def end_target(self, name: str) -> int:
        """Index of the element an end tag `name` closes (popping all above it); -1: none."""
        size = len(self.stack)
        if self.in_foreign():
            if name == "p" or name == "br":  # closes the SVG/MathML content
                size = self.foreign_start()
                self.close_to(size)
            else:  # an element of that name in the content; past it, as an HTML end tag
                start = self.foreign_start(through_integration=True)
                top = _top_below(self.where.get(name), size)
                if top >= start:
                    return top
        return self._html_end_target(name, size)

    def _html_end_target(self, name: str, size: int) -> int:
        where, barriers = self.where, self.barriers
        top = _top_below(where.get(name), size)
        if name == "form":
            self.form_open = False  # the tree builder takes the form out wherever it is
            if top >= 0 and top == size - 1:
                return top
            if top >= 0 and _top_below(barriers[_K_SCOPE], size) <= top:
                self.make_stale(top)
            return -1
        if name in _FORMATTING:
            entry = self.segments[-1].last(name)
            if entry is not None:
                target = self.adoption(entry, size, start_tag=False)
                return target if target < size else -1
        if name in _HEADINGS:  # </h1> closes the innermost heading, <h2> or any
            return _in_scope(barriers[_K_HEADING][-1:], barriers[_K_SCOPE], size)
        if top < 0:
            return -1
        if name == "template":
            return top
        if name == "colgroup":
            return top if top == size - 1 else -1
        elif name in _TABLE_PARTS or name == "table":
            kind = _K_TABLE
        elif name == "li":
            kind = _K_LIST
        elif name == "p":
            kind = _K_BUTTON
        elif name in _SCOPE_END:
            kind = _K_SCOPE
        else:
            kind = _K_SPECIAL
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
        end = m.end()
        if not end_tag:
            foreign = model.in_foreign() and not (
                name in _BREAKOUT or (name == "font" and _FONT_BREAKOUT.search(rest))
            )
            if foreign:
                if rest[-2:-1] == "/":
                    continue  # self-closing in SVG/MathML (elsewhere '/>' is ignored)
                size = len(model.stack)
                ns = model.ns[-1]
            elif name in _IGNORED or name in _RAW or name == "plaintext":
                size = model.closed_size(name)  # <hr> closes a <p>, <col> a table's rows ...
                if size >= 0:
                    model.close_to(size)
                    for part in model.implied:
                        model.push(part, _HTML)
                if name in _IGNORED:
                    continue
                if name == "plaintext":
                    break  # the rest of the page is text
                raw_end = _RAW_END[name].search(text, end)
                if raw_end is None:
                    break
                skip_to = raw_end.start()
                continue
            else:
                if name in _FOREIGN and rest[-2:-1] == "/":
                    continue
                size = model.closed_size(name)
                if size < 0:
                    continue
                if not model.pushed:
                    model.close_to(size)
                    continue
                size = model.size_after(size)
                ns = _FOREIGN.get(name, _HTML)
            if size + len(model.implied if not foreign else ()) >= max_depth:
                model.reopen()  # as the text after the dropped tag would
                cuts.append((start, end))
                overflow.append(name)
                overflow_open[name] = overflow_open.get(name, 0) + 1
                continue
            if overflow:  # what the kept tag closes, it closes with what was dropped above
                overflow.clear()
                overflow_open.clear()
            model.close_to(size)
            entry = None
            if ns == _HTML:
                for part in model.implied:
                    model.push(part, _HTML)
                model.reopen()
                if name in _FORMATTING:
                    entry = model.open_formatting(name, rest)
                    if entry is None:
                        cuts.append((start, end))
                        continue
            model.push(name, ns, entry)
            continue
        # end tag
        if overflow_open.get(name):
            cuts.append((start, end))
            while True:
                closed = overflow.pop()
                overflow_open[closed] -= 1
                if closed == name:
                    break
            continue
        stack = model.stack
        if stack and stack[-1] == name and model.live[-1]:  # the usual case: closes the top
            entry = model.entry[-1]
            if name not in _FORMATTING or (entry is not None and not model.segments[-1].pending):
                if entry is not None:
                    model.entry[-1] = None
                    model.segments[-1].forget(entry)
                elif name == "form":
                    model.form_open = False
                model.pop_to(len(stack) - 1)
                if overflow:
                    overflow.clear()
                    overflow_open.clear()
                continue
        if name in _IGNORED and not (name == "br" and model.in_foreign()):
            continue
        target = model.end_target(name)
        if target < 0:
            continue  # stray or out of scope: ignored by the tree builder, kept open here
        model.close_to(target)
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
