"""The project's HL7 v2 parser against python-hl7, field by field, on every generated
message and on hand-written edge cases; and its own errors and escapes."""

from __future__ import annotations

import contextlib

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hs_ingestion.hl7 import Delimiters, Hl7Error, declared_charset, decode, parse, unescape
from hs_synth.generate import GeneratorConfig, generate
from hs_synth.replay import mllp_frames

EDGE_CASES = [
    "MSH|^~\\&|A|B|C|D|20260101||ADT^A04|1|P|2.5\rPID|1||X||DOE^JOHN",
    "MSH|^~\\&|A|B\rPID|1||M1^^^H^MR~330^^^CHN^NNCHN||WANG^XM&X^^^^^L\rZPI|1|\r",
    "MSH|^~\\&|A|B\r\nPID|1\r\nOBX|1|TX|C||line one\\.br\\line two|\r\n",
    "MSH|^~\\&|A|B\nPID|1\nNTE|1||A\\T\\B \\F\\ \\S\\ \\R\\ \\E\\ end\n",
    "MSH|^~\\&|A|B\rPID||||||||||||||||||||||||||||||\r",
    "MSH|^~\\&|A|B\rOBX|1|NM|GLU^^L~X^^L||5.4|mmol/L|3.9-6.1|N|||F\r\r\r",
    "MSH#^~\\&#A#B\rPID#1##M1^^^H^MR",
    "MSH|*~\\&|A|B\rPID|1||M1*Q*R&S*T~U",
    "MSH|^~\\&|A|B\rPV1|1|I|||||||||||||||||V1\rZZ9|x^y^z&w|~~|^^^|\r",
]


def _python_hl7_tree(field: object) -> list[list[list[str]]]:
    """python-hl7 nests by what is present; bring it to repetitions > components > subs."""
    items = list(field)  # type: ignore[call-overload]
    if all(isinstance(item, str) for item in items):
        return [[[str(item) for item in items]]] if len(items) == 1 else [[[str(i)] for i in items]]
    # python-hl7 writes an empty repetition or component as [], this parser as [""]: same value
    return [
        [[str(s) for s in component] or [""] for component in repetition] or [[""]]
        for repetition in items
    ]


def _assert_same(text: str) -> None:
    ours = parse(text)
    theirs = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
    assert [s.name for s in ours.segments] == [str(s[0]) for s in theirs]
    for mine, reference in zip(ours.segments, theirs, strict=True):
        assert len(mine) == len(reference), mine.name
        for position in range(1, len(mine)):
            assert mine.tree(position) == _python_hl7_tree(reference[position]), (
                mine.name,
                position,
            )


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match_python_hl7(text: str) -> None:
    _assert_same(text)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("corpus")
    generate(
        GeneratorConfig(people=800, days=14, bad_rate=0.0, courses={"inpatients": 5}),
        out,
        progress=False,
    )
    texts = []
    for path in sorted((out / "hl7").glob("*.mllp")):
        for frame in mllp_frames(path.read_bytes()):
            text, _ = decode(
                frame.payload[1:-2], override="gb18030" if path.stem == "SH02" else None
            )
            texts.append(text)
    return texts


def test_every_generated_message_matches_python_hl7(corpus: list[str]) -> None:
    assert len(corpus) > 1000
    for text in corpus:
        _assert_same(text)


def test_unescaped_values_match_python_hl7_where_both_define_them(corpus: list[str]) -> None:
    for text in [*corpus[:300], *EDGE_CASES[:4]]:
        theirs = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
        for mine in parse(text).segments:
            for position in range(3 if mine.name == "MSH" else 1, len(mine)):
                raw = mine.field(position)
                if "\\X" in raw or "\\.br\\" in raw or "\\H\\" in raw:
                    continue
                assert unescape(raw) == theirs.unescape(raw)


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("A\\T\\B", "A&B"),
        ("x\\.br\\y", "x\ny"),  # python-hl7 gives CR, which downstream would read as a segment end
        ("\\XE4B8AD\\", "中"),  # python-hl7 maps each byte to a code point instead
        ("\\H\\bold\\N\\", "bold"),
        ("dangling\\", "dangling\\"),
    ],
)
def test_escapes(escaped: str, text: str) -> None:
    assert unescape(escaped) == text


def test_values_by_position() -> None:
    message = parse(EDGE_CASES[1])
    pid = message.segment("PID")
    assert pid is not None
    assert pid.value(3) == "M1"
    assert pid.value(3, 4) == "H"
    assert pid.value(3, 1, repetition=1) == "330"
    assert pid.value(5, 2, subcomponent=2) == "X"
    assert pid.value(99) == ""
    assert message.msh.field(1) == "|"
    assert message.msh.field(2) == "^~\\&"
    assert message.segment("ZPI") is not None


def test_custom_delimiters_are_read_from_msh() -> None:
    message = parse(EDGE_CASES[7])
    assert message.delimiters == Delimiters("|", "*", "~", "\\", "&")
    assert message.segments[1].value(3, 3) == "R"


@pytest.mark.parametrize(
    ("text", "where", "code"),
    [
        ("PID|1||X", "segment 1", "hl7.msh_missing"),
        ("", "segment 1", "hl7.msh_missing"),
        ("MSH|^~", "MSH", "hl7.delimiters"),
        ("MSH|^^\\&|A", "MSH-2", "hl7.delimiters"),
        ("MSH|^~\\&|A\rPID#1##X", "segment 2", "hl7.delimiters"),
        ("MSH|^~\\&|A\rpid|1", "segment 2", "hl7.delimiters"),
    ],
)
def test_errors_name_the_position_and_never_the_content(text: str, where: str, code: str) -> None:
    with pytest.raises(Hl7Error) as raised:
        parse(text)
    assert raised.value.where == where
    assert raised.value.reason_code == code
    assert "X" not in raised.value.problem


def test_character_set_comes_from_msh18_unless_the_source_overrides_it() -> None:
    utf8 = "MSH|^~\\&|A|B|C|D|||ADT^A04|1|P|2.5|||AL|NE||UNICODE UTF-8\rPID|1||||王^小明".encode()
    assert declared_charset(utf8) == "UNICODE UTF-8"
    assert decode(utf8)[0].endswith("王^小明")
    gb = "MSH|^~\\&|A|B|C|D|||ADT^A04|1|P|2.4\rPID|1||||王^小明".encode("gb18030")
    with pytest.raises(Hl7Error, match="MSH-18: bytes are not valid ascii") as raised:
        decode(gb, undeclared="ascii")  # the standard's default for an empty MSH-18
    assert raised.value.reason_code == "hl7.charset"
    assert decode(gb) == (gb.decode("gb18030"), "gb18030")  # what Chinese senders mean by it
    assert decode(gb, override="gb18030")[0].endswith("王^小明")


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from("MSHPID|^~\\&\r\n12AZ# "), max_size=120))
def test_any_text_parses_or_raises_hl7_error(text: str) -> None:
    with contextlib.suppress(Hl7Error):
        parse(text)
