"""An HL7 v2 parser: delimiters from MSH, segments split on CR, LF or CRLF, fields split
eagerly, repetitions, components and subcomponents split on demand, escape sequences
decoded on demand. Z-segments are kept like any other.

Positions follow HL7 notation: `segment.field(5)` is PID-5, components and subcomponents
count from 1; for MSH, field 1 is the field separator and field 2 the encoding characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from hs_common.errors import RejectedInput

BYTE_ORDER_MARK = "\ufeff"
UTF8_BOM = BYTE_ORDER_MARK.encode()


class Hl7Error(RejectedInput):
    """The message cannot be parsed; `where` is an HL7 position such as 'PID-7' or 'segment 3'."""

    reason_code = "hl7.invalid"

    def __init__(self, where: str, problem: str, reason_code: str | None = None) -> None:
        super().__init__(f"{where}: {problem}", reason_code)
        self.where = where
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


class Segment:
    __slots__ = ("_delimiters", "fields", "name")

    def __init__(self, fields: list[str], delimiters: Delimiters) -> None:
        self.fields = fields
        self.name = fields[0]
        self._delimiters = delimiters

    def __len__(self) -> int:
        return len(self.fields)

    def field(self, position: int) -> str:
        """The raw (escaped) field, '' when absent."""
        return self.fields[position] if position < len(self.fields) else ""

    def repetitions(self, position: int) -> list[str]:
        raw = self.field(position)
        if self.name == "MSH" and position <= 2:
            return [raw]
        return raw.split(self._delimiters.repetition)

    def components(self, position: int, repetition: int = 0) -> list[str]:
        repetitions = self.repetitions(position)
        if repetition >= len(repetitions):
            return [""]
        if self.name == "MSH" and position <= 2:
            return [repetitions[0]]
        return repetitions[repetition].split(self._delimiters.component)

    def tree(self, position: int) -> list[list[list[str]]]:
        """Every repetition, component and subcomponent of a field, raw."""
        raw = self.field(position)
        d = self._delimiters
        if (self.name == "MSH" and position <= 2) or not (
            d.repetition in raw or d.component in raw or d.subcomponent in raw
        ):
            return [[[raw]]]
        return [
            [component.split(d.subcomponent) for component in repetition.split(d.component)]
            for repetition in raw.split(d.repetition)
        ]

    def text(self, position: int, repetition: int = 0) -> str:
        """One repetition of a field unescaped, its components still joined by '^'."""
        repetitions = self.repetitions(position)
        raw = repetitions[repetition] if repetition < len(repetitions) else ""
        d = self._delimiters
        return unescape(raw, d) if d.escape in raw else raw

    def value(
        self, position: int, component: int = 1, repetition: int = 0, subcomponent: int = 1
    ) -> str:
        """The unescaped text at PID-5.1 style coordinates ('' when absent)."""
        raw = self.fields[position] if position < len(self.fields) else ""
        if self.name == "MSH" and position <= 2:
            return raw
        d = self._delimiters
        if repetition or d.repetition in raw:
            repetitions = raw.split(d.repetition)
            raw = repetitions[repetition] if repetition < len(repetitions) else ""
        if component > 1 or d.component in raw:
            components = raw.split(d.component)
            raw = components[component - 1] if component <= len(components) else ""
        if subcomponent > 1 or d.subcomponent in raw:
            parts = raw.split(d.subcomponent)
            raw = parts[subcomponent - 1] if subcomponent <= len(parts) else ""
        return unescape(raw, d) if d.escape in raw else raw


class Message:
    __slots__ = ("delimiters", "segments")

    def __init__(self, segments: list[Segment], delimiters: Delimiters) -> None:
        self.segments = segments
        self.delimiters = delimiters

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def segment(self, name: str) -> Segment | None:
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def message_type(self) -> tuple[str, str, str]:
        """(MSH-9.1, MSH-9.2, MSH-9.3), e.g. ('ADT', 'A04', 'ADT_A01')."""
        return self.msh.value(9, 1), self.msh.value(9, 2), self.msh.value(9, 3)

    @property
    def version(self) -> str:
        return self.msh.value(12)


def parse(text: str) -> Message:
    """Parse one message. Raises Hl7Error naming the segment or field that is wrong."""
    text = text.removeprefix(BYTE_ORDER_MARK)
    start = text.find("MSH")
    if start == -1 or text[:start].strip():
        raise Hl7Error("segment 1", "message does not start with MSH", "hl7.msh_missing")
    if len(text) < start + 8:
        raise Hl7Error(
            "MSH", "too short to hold the field separator and encoding characters", "hl7.delimiters"
        )
    field_separator = text[start + 3]
    encoding_end = text.find(field_separator, start + 4)
    encoding = text[start + 4 : encoding_end if encoding_end != -1 else None].rstrip("\r\n")
    if (
        field_separator.isalnum()
        or len(encoding) < 4
        or len(set(encoding[:4] + field_separator)) != 5
    ):
        raise Hl7Error(
            "MSH-2", "encoding characters must be four distinct separators", "hl7.delimiters"
        )
    delimiters = Delimiters(field_separator, encoding[0], encoding[1], encoding[2], encoding[3])
    lines = text[start:].replace("\r\n", "\r").replace("\n", "\r").split("\r")
    segments: list[Segment] = []
    for index, line in enumerate(lines, start=1):
        if not line:
            continue
        fields = line.split(field_separator)
        name = fields[0]
        if len(name) != 3 or not (name[0].isalpha() and name.isalnum() and name.isupper()):
            problem = f"no segment id followed by the field separator '{field_separator}'"
            raise Hl7Error(f"segment {index}", problem, "hl7.delimiters")
        if index == 1:
            fields = ["MSH", field_separator, *fields[1:]]
        segments.append(Segment(fields, delimiters))
    return Message(segments, delimiters)


_ESCAPE = re.compile(r"\\([^\\]*)\\")


def unescape(value: str, delimiters: Delimiters = Delimiters(), charset: str = "utf-8") -> str:
    """Decode escape sequences (HL7 v2 §2.7): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\Xhh..\\ (bytes in
    the message's character set), \\.br\\ (line break, as '\\n'); highlighting and other
    formatting sequences are dropped. An escape character without a partner is kept."""
    e = delimiters.escape
    if e != "\\":
        pattern = re.compile(re.escape(e) + "([^" + re.escape(e) + "]*)" + re.escape(e))
    else:
        pattern = _ESCAPE
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": e,
    }

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in simple:
            return simple[code]
        if code == ".br":
            return "\n"
        if code.startswith("X"):
            try:
                return bytes.fromhex(code[1:]).decode(charset, errors="replace")
            except ValueError:
                return ""
        return ""  # \H\ \N\ \.sp\ \Zxxx\ and character-set switches: formatting, not content

    return pattern.sub(replace, value)


def escape_text(text: str, delimiters: Delimiters = Delimiters()) -> str:
    """The inverse of unescape for plain text (used in acknowledgements)."""
    d = delimiters
    out = text.replace(d.escape, f"{d.escape}E{d.escape}")
    for raw, code in (
        (d.field, "F"),
        (d.component, "S"),
        (d.subcomponent, "T"),
        (d.repetition, "R"),
    ):
        out = out.replace(raw, f"{d.escape}{code}{d.escape}")
    return out.replace("\r", " ").replace("\n", f"{d.escape}.br{d.escape}")


# MSH-18 values (HL7 table 0211), and the spellings senders use, to the Python codecs that
# read them. GB 18030 reads GBK and GB 2312 bytes as well (it is their superset).
CHARSETS = {
    "ASCII": "ascii", "8859/1": "latin-1", "8859/15": "iso8859-15", "ISO-8859-1": "latin-1",
    "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8", "UTF-8": "utf-8", "UTF8": "utf-8",
    "GB 18030-2000": "gb18030", "GB18030": "gb18030", "GB 18030": "gb18030", "GBK": "gb18030",
    "GB2312": "gb18030", "GB 2312": "gb18030", "CHINESE": "gb18030", "CP936": "gb18030",
}  # fmt: skip
UNDECLARED = {"ascii": ("ascii",), "utf-8-or-gb18030": ("utf-8", "gb18030")}


def declared_charset(data: bytes) -> str:
    """MSH-18 as declared, read before decoding (MSH is ASCII in every character set)."""
    end = len(data)
    for terminator in (b"\r", b"\n"):
        position = data.find(terminator)
        if position != -1:
            end = min(end, position)
    msh = data[:end].removeprefix(UTF8_BOM)
    if not msh.startswith(b"MSH") or len(msh) < 4:
        return ""
    fields = msh.split(msh[3:4])
    if len(fields) <= 17:
        return ""
    first = fields[17].split(msh[4:5] or b"^")[0].split(msh[5:6] or b"~")[0]
    return first.decode("ascii", errors="replace").strip().upper()


def decode(
    data: bytes, override: str | None = None, undeclared: str = "utf-8-or-gb18030"
) -> tuple[str, str]:
    """(text, python codec used): the per-source override wins over MSH-18 (for senders that
    declare one character set and send another); with MSH-18 empty the source's policy says
    which character sets to try, in order."""
    if data.startswith(UTF8_BOM) and not override:  # a byte order mark says UTF-8
        return data.decode("utf-8-sig"), "utf-8"
    declared = declared_charset(data)
    if override:
        candidates: tuple[str, ...] = (override,)
    elif declared:
        codec = CHARSETS.get(declared)
        if codec is None:
            raise Hl7Error("MSH-18", "character set is not supported", "hl7.charset")
        candidates = (codec,)
    else:
        candidates = UNDECLARED.get(undeclared, ("ascii",))
    for codec in candidates:
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError:
            continue
    raise Hl7Error(
        "MSH-18",
        f"bytes are not valid {' or '.join(candidates)} (declared, configured or tried)",
        "hl7.charset",
    )


def parse_timestamp(
    value: str, where: str, zone: tzinfo = timezone(timedelta(hours=8))
) -> datetime:
    """HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) as an aware datetime. Without an
    offset, the time is the sender's local time in its zone (daylight saving included)."""
    text = value.strip()
    explicit: tzinfo | None = None
    for sign in ("+", "-"):
        if sign in text[4:]:
            text, offset = text[: text.index(sign, 4)], text[text.index(sign, 4) + 1 :]
            if len(offset) != 4 or not offset.isdigit():
                raise Hl7Error(where, "time zone offset must be +/-HHMM", "hl7.invalid_date")
            explicit = timezone(
                timedelta(hours=int(offset[:2]), minutes=int(offset[2:]))
                * (1 if sign == "+" else -1)
            )
    digits, _, fraction = text.partition(".")
    if not digits.isdigit() or len(digits) not in (4, 6, 8, 10, 12, 14):
        raise Hl7Error(where, "not an HL7 date/time (YYYYMMDD[HHMM[SS]])", "hl7.invalid_date")
    parts = [int(digits[i : i + 2]) for i in range(4, len(digits), 2)]
    year, month, day, hour, minute, second = (
        int(digits[:4]),
        *(parts + [1, 1, 0, 0, 0][len(parts) :]),
    )
    try:
        micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=explicit or zone)
    except ValueError:
        raise Hl7Error(
            where, "date/time out of range (month, day, hour, minute or second)", "hl7.invalid_date"
        ) from None


BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")


def is_batch(data: bytes) -> bool:
    return data.removeprefix(UTF8_BOM).lstrip()[:3] in (b"FHS", b"BHS")


def split_messages(data: bytes) -> list[bytes]:
    """The messages in HL7 bytes: a file or batch (FHS/BHS ... BTS/FTS, whose header and
    trailer segments are dropped) or messages one after another, each starting at an MSH
    segment. Each message keeps its bytes as sent, segment terminators included."""
    messages: list[bytes] = []
    for line in re.split(rb"(?<=\r)(?!\n)|(?<=\n)", data.removeprefix(UTF8_BOM)):
        if line.lstrip()[:3] in BATCH_SEGMENTS:
            continue
        if line.startswith(b"MSH") or not messages:
            messages.append(line)
        else:
            messages[-1] += line
    return [m for m in messages if m.strip()]
