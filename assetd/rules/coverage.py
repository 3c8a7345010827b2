"""Which globs cover which, and which rules can never match (pure: no I/O).

Glob A *covers* glob B when every string B matches (``fnmatchcase``), A matches too. The check
is exact for literals, for ``*`` and for literal prefixes and suffixes around ``*`` (``fraud_*``
covers ``fraud_m*``), and conservative everywhere else: when it cannot prove coverage it says
no, so a rule is reported dead only when it truly is. A rule is dead when an earlier rule
matches every (asset, branch) it matches: the first matching rule applies, so it never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from functools import lru_cache

from assetd.schemas.rules import Rule

MAX_WORK = 1_000_000
"""Most work (pattern comparisons and table cells) one :func:`dead_rules` call spends;
past it, no more rules are reported (never a false report, and a hostile file stays cheap)."""

CharSet = tuple[frozenset[str], bool]  # the ASCII characters matched, and whether all others are
Token = CharSet | None  # None is ``*``
_ASCII = tuple(chr(c) for c in range(128))
_ANY: CharSet = (frozenset(_ASCII), True)
_META = frozenset("*?[")


class Work:
    """A budget of work shared by the comparisons of one check."""

    def __init__(self, budget: int = MAX_WORK) -> None:
        self.left = budget

    def spend(self, amount: int) -> bool:
        """Take ``amount`` from the budget; False if it is not there (then the budget is spent:
        a check that ran out decides nothing more)."""
        if amount > self.left:
            self.left = 0
            return False
        self.left -= amount
        return True


def glob_covers(outer: str, inner: str, *, work: Work | None = None) -> bool:
    """True only if every string ``inner`` matches is matched by ``outer`` (fnmatch globs)."""
    work = work or Work()
    if not work.spend(1 + len(inner)):
        return False
    if not _META.intersection(inner):
        return fnmatchcase(inner, outer)
    a, b = _tokens(outer), _tokens(inner)
    if a is None or b is None:
        return False
    stripped = _strip(a, b)
    if stripped is None:
        return False
    a, b = stripped
    return work.spend((len(a) + 1) * (len(b) + 1)) and _table(a, b)


def branches_cover(outer: Sequence[str] | None, inner: Sequence[str] | None, *,
                   work: Work | None = None) -> bool:
    """True only if ``outer`` branch globs (None: every branch) cover all of ``inner``'s."""
    work = work or Work()
    if outer is None:
        return True
    if inner is None:
        return any(glob_covers(o, "*", work=work) for o in outer)
    return all(any(glob_covers(o, b, work=work) for o in outer) for b in inner)


def dead_rules(rules: Sequence[Rule], *, budget: int = MAX_WORK) -> list[tuple[int, int]]:
    """``(dead, by)`` for each rule that can never match: ``by`` is the first earlier rule
    (itself live) that matches every asset and branch the dead one matches."""
    work = Work(budget)
    literal: dict[str, list[int]] = {}  # an exact asset id → the live rules naming it, in order
    globs: list[tuple[int, str]] = []  # the live glob rules, with the literal start of the glob
    dead: list[tuple[int, int]] = []
    for j, rule in enumerate(rules):
        if not work.left:
            break
        exact = not _META.intersection(rule.asset)
        by = _first_cover(rules, rule, literal.get(rule.asset, []) if exact else [], globs, work)
        if by is not None:
            dead.append((j, by))
        elif exact:
            literal.setdefault(rule.asset, []).append(j)
        else:
            globs.append((j, _literal_start(rule.asset)))
    return dead


def _first_cover(rules: Sequence[Rule], rule: Rule, same: list[int],
                 globs: list[tuple[int, str]], work: Work) -> int | None:
    """The first of ``same`` (rules with this exact asset) and ``globs`` covering ``rule``."""
    candidates = sorted([*same, *(i for i, start in globs if rule.asset.startswith(start))])
    for i in candidates:
        earlier = rules[i]
        if (i in same or glob_covers(earlier.asset, rule.asset, work=work)) and \
                branches_cover(earlier.branches, rule.branches, work=work):
            return i
    return None


def _literal_start(glob: str) -> str:
    """What every string the glob matches starts with, up to its first ``*``, ``?`` or ``[``
    (a rule not starting so is not covered by it; skipping it early is only faster)."""
    for n, c in enumerate(glob):
        if c in _META:
            return glob[:n]
    return glob


@lru_cache(maxsize=4096)
def _tokens(glob: str) -> tuple[Token, ...] | None:
    """The glob as fnmatch reads it, or None for a glob this module does not decide."""
    if not (glob.isascii() and glob.isprintable()):
        return None
    out: list[Token] = []
    i = 0
    while i < len(glob):
        c, end = glob[i], _class_end(glob, i)
        if c == "*":
            out.append(None)
        elif c == "?":
            out.append(_ANY)
        elif c == "[" and end is not None:
            out.append(_class(glob[i:end + 1]))
            i = end
        else:  # a literal, or a "[" that fnmatch reads as one because nothing closes it
            out.append((frozenset(c), False))
        i += 1
    return _normalised(out)


def _class_end(glob: str, i: int) -> int | None:
    """Where fnmatch ends the ``[...]`` starting at ``i`` (its scan, exactly), or None."""
    if glob[i] != "[":
        return None
    j = i + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    while j < len(glob) and glob[j] != "]":
        j += 1
    return j if j < len(glob) else None


def _class(token: str) -> CharSet:
    """The characters a ``[...]`` matches, asked of fnmatch itself (its endpoints are ASCII, so
    every non-ASCII character behaves as ``\\u0100`` does)."""
    return (frozenset(c for c in _ASCII if fnmatchcase(c, token)), fnmatchcase("\u0100", token))


def _normalised(tokens: list[Token]) -> tuple[Token, ...]:
    """Each run of ``*`` and ``?`` with a ``*`` in it as its ``?``s then one ``*`` (same
    language: ``*?`` is ``?*``, ``**`` is ``*``)."""
    out: list[Token] = []
    run: list[Token] = []
    for tok in [*tokens, (frozenset(), False)]:  # a sentinel ends the last run
        if tok is None or tok == _ANY:
            run.append(tok)
            continue
        out.extend([_ANY] * run.count(_ANY) + [None] if None in run else run)
        out.append(tok)
        run = []
    return tuple(out[:-1])


def _subset(inner: CharSet, outer: CharSet) -> bool:
    return inner[0] <= outer[0] and (outer[1] or not inner[1])


def _strip(a: tuple[Token, ...], b: tuple[Token, ...]
           ) -> tuple[tuple[Token, ...], tuple[Token, ...]] | None:
    """Drop the single characters both start (then end) with; None if one there is not covered."""
    for _ in range(2):
        n = 0
        while n < min(len(a), len(b)):
            x, y = a[n], b[n]
            if x is None or y is None:
                break
            if not _subset(y, x):
                return None
            n += 1
        a, b = a[n:][::-1], b[n:][::-1]  # the second pass works on the reversed rest
    return a, b


def _table(a: tuple[Token, ...], b: tuple[Token, ...]) -> bool:
    """Does ``a`` cover ``b``? ``row[j]`` is "a[i:] covers b[j:]", rows built from the end. Each
    step is sound; a single character of ``a`` against a ``*`` of ``b`` is taken as no."""
    row = [False] * len(b) + [True]  # i == len(a): only the empty b[j:] is covered
    for i in range(len(a) - 1, -1, -1):
        nxt, tok = row, a[i]
        row = [False] * len(b) + [tok is None and nxt[len(b)]]
        for j in range(len(b) - 1, -1, -1):
            if tok is None:  # a's * matches nothing here, or takes b[j] too
                row[j] = nxt[j] or row[j + 1]
            else:
                other = b[j]
                row[j] = other is not None and _subset(other, tok) and nxt[j + 1]
    return row[0]
