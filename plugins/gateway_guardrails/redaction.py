"""Finding PII in text and replacing it, on whole texts and on text that arrives in pieces.

A :class:`Redactor` scans like one regex alternation: from the scan position, the leftmost match
of any detector wins (the earlier detector on a tie), the scan resumes after it. A detector may
accept only a prefix of its match (a card number's Luhn check); what it rejects is scanned by
the detectors after it. The result depends on the text alone, so a stream can reproduce it.

A :class:`StreamRedactor` emits a prefix of the text seen so far only once the matches inside it
cannot change whatever text follows. Every detector has a *reach*, the most characters a match
attempt reads from where it starts (match plus lookahead), and may have a *stop*, characters it
can never read past. An attempt at ``i`` is settled when a stop lies at or after ``i`` or when
``i + reach`` chars are known; the emitted prefix ends where every attempt before it is settled
and no match straddles it. So the streamed output is exactly the whole text's redaction: PII is
never emitted unredacted, and nothing is dropped or repeated. The held-back tail is short in
prose: the text after the last space or letter, or at most a reach (about 40 chars for cards
and phones, 475 for an unbroken e-mail-like run, ``stream_window`` for custom patterns).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# Chars of already-emitted text kept before the held tail, for the detectors' lookbehinds.
_CONTEXT = 32


def _whole(text: str) -> int:
    return len(text)


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of PII.

    Attributes:
        label: what the replacement names (``email``, ``card``, a custom pattern's label).
        pattern: finds candidates; never matches the empty string.
        reach: the most characters one match attempt reads from its start.
        stop: matches the last char of a text that no match can read past, to the end of the
            text; None when any char may be part of a match.
        accept: how many leading chars of a candidate are PII (0: none).
    """

    label: str
    pattern: re.Pattern[str]
    reach: int
    stop: re.Pattern[str] | None = None
    accept: Callable[[str], int] = _whole


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn checksum."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_prefix(text: str) -> int:
    """The longest prefix of ``text`` ending at a group boundary that holds 13 to 19 digits
    with a valid Luhn checksum (its length; 0 for none)."""
    ends = [i for i, char in enumerate(text) if char in " -"] + [len(text)]
    for end in reversed(ends):
        digits = text[:end].replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return end
    return 0


def _intl_phone(text: str) -> int:
    digits = sum(char.isdigit() for char in text)
    return len(text) if 8 <= digits <= 15 else 0


_NUMBER_STOP = re.compile(r"[^0-9 ().+\-][0-9 ().+\-]*\Z")
_EMAIL_STOP = re.compile(r"[^A-Za-z0-9._%+@\-][A-Za-z0-9._%+@\-]*\Z")

# Reaches are the patterns' widest matches plus one char of lookahead.
BUILTIN: dict[str, tuple[Detector, ...]] = {
    "card": (
        Detector(
            "card",
            # 13-19 digits, single spaces or dashes between them; first digit of a card network.
            re.compile(r"(?<![0-9+])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])"),
            reach=38,
            stop=_NUMBER_STOP,
            accept=_card_prefix,
        ),
    ),
    "phone": (
        Detector(
            "phone",
            # +CC then 2 to 5 groups (8 to 15 digits in all): +44 20 7946 0958, +1 (555) 123-4567.
            re.compile(
                r"(?<![0-9A-Za-z_+])\+[0-9]{1,3}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})){2,5}"
                r"(?![0-9])"
            ),
            reach=40,
            stop=_NUMBER_STOP,
            accept=_intl_phone,
        ),
        Detector(
            "phone",
            # US forms with separators: (555) 123-4567, 555-123-4567, 555.123.4567.
            re.compile(
                r"(?<![0-9A-Za-z_+(])(?:\([0-9]{3}\) ?|[0-9]{3}[\-. ])[0-9]{3}[\-. ][0-9]{4}"
                r"(?![0-9])"
            ),
            reach=15,
            stop=_NUMBER_STOP,
        ),
    ),
    "email": (
        Detector(
            "email",
            re.compile(
                r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@"
                r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,6}[A-Za-z]{2,24}"
                r"(?![A-Za-z0-9\-])"
            ),
            reach=475,
            stop=_EMAIL_STOP,
        ),
    ),
}


class Redactor:
    """Replaces what ``detectors`` find with ``replacement.format(label=...)``.

    Args:
        detectors: in priority order (on a tie the earlier one wins).
        replacement: a format string with ``{label}``.
    """

    __slots__ = ("_detectors", "_fallbacks", "_replacements")

    def __init__(self, detectors: Sequence[Detector], replacement: str) -> None:
        self._detectors = tuple(detectors)
        self._replacements = tuple(replacement.format(label=d.label) for d in self._detectors)
        # What a detector rejects is scanned by the ones after it.
        self._fallbacks = tuple(
            Redactor(self._detectors[i + 1 :], replacement) if i + 1 < len(detectors) else None
            for i in range(len(self._detectors))
        )

    def redact(self, text: str) -> str:
        """``text`` with every match replaced."""
        return self.render(text, 0, None)[0]

    def render(self, text: str, start: int, limit: int | None) -> tuple[str, int]:
        """Redact ``text[start:end]`` and say where ``end`` is.

        ``text[:start]`` is context only (for lookbehinds). With ``limit`` None, ``end`` is the
        end of the text, which is final. Otherwise ``end`` is ``limit`` or, when a match starts
        before ``limit`` and ends after it, that match's start.
        """
        out: list[str] = []
        position = start
        for index, match in self._matches(text, start):
            if limit is not None and match.end() > limit:
                if match.start() < limit:
                    limit = match.start()
                break
            out.append(text[position : match.start()])
            out.append(self._replace(index, match.group()))
            position = match.end()
        end = len(text) if limit is None else limit
        out.append(text[position:end])
        return "".join(out), end

    def hold(self, pending: str) -> int:
        """How many leading chars of ``pending`` (text not emitted yet, more to come) have their
        match attempts settled."""
        size = len(pending)
        cut = size
        for detector in self._detectors:
            settled = size - detector.reach
            if detector.stop is not None and (stop := detector.stop.search(pending)):
                settled = max(settled, stop.start())
            cut = min(cut, settled)
        return max(cut, 0)

    def _replace(self, index: int, found: str) -> str:
        accepted = self._detectors[index].accept(found)
        rest = found[accepted:]
        fallback = self._fallbacks[index]
        if fallback is not None:
            rest = fallback.redact(rest)
        return (self._replacements[index] if accepted else "") + rest

    def _matches(self, text: str, start: int) -> Iterator[tuple[int, re.Match[str]]]:
        """Leftmost-first, non-overlapping matches from ``start``: ``(detector index, match)``."""
        upcoming = [_search(d.pattern, text, start) for d in self._detectors]
        while True:
            best: re.Match[str] | None = None
            best_index = -1
            for index, match in enumerate(upcoming):
                if match is not None and (best is None or match.start() < best.start()):
                    best, best_index = match, index
            if best is None:
                return
            yield best_index, best
            position = best.end()
            for index, match in enumerate(upcoming):
                if match is not None and match.start() < position:
                    upcoming[index] = _search(self._detectors[index].pattern, text, position)


def _search(pattern: re.Pattern[str], text: str, position: int) -> re.Match[str] | None:
    """The first non-empty match of ``pattern`` at or after ``position``."""
    match = pattern.search(text, position)
    while match is not None and match.end() == match.start():
        match = pattern.search(text, match.start() + 1)
    return match


class StreamRedactor:
    """Redacts one text that arrives in pieces (one choice of a stream).

    The concatenation of what :meth:`feed` and :meth:`finish` return equals
    ``redactor.redact(whole text)``.
    """

    __slots__ = ("_context", "_pending", "_redactor")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._context = ""
        self._pending = ""

    def feed(self, piece: str) -> str:
        """Take the next piece; return the redacted text that is now safe to emit."""
        pending = self._pending + piece
        cut = self._redactor.hold(pending)
        if cut == 0:
            self._pending = pending
            return ""
        text = self._context + pending
        start = len(self._context)
        out, end = self._redactor.render(text, start, start + cut)
        self._context = text[max(0, end - _CONTEXT) : end]
        self._pending = text[end:]
        return out

    def finish(self) -> str:
        """The redacted rest (the text is complete)."""
        context, pending = self._context, self._pending
        self._context = self._pending = ""
        return self._redactor.render(context + pending, len(context), None)[0]
