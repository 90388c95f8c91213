"""HL7 v2 messages as three hospitals send them: each with its own version, character set,
segment terminator, identifier style and Z-segment."""

from __future__ import annotations

from datetime import date, datetime

from hs_synth.defects import vital_code
from hs_synth.events import (
    ANALYSED_AFTER,
    Admission,
    Diagnosis,
    LabResult,
    VitalSigns,
    report_sent_at,
)
from hs_synth.institutions import Institution
from hs_synth.registrations import Registration

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"
ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(text: str) -> str:
    for raw, escaped in ESCAPES:
        text = text.replace(raw, escaped)
    return text.replace("\n", "\\.br\\")


def ts(at: datetime) -> str:
    return f"{at:%Y%m%d%H%M%S}"


def dt(day: date | None) -> str:
    return f"{day:%Y%m%d}" if day else ""


class Hl7Writer:
    """Builds one institution's messages; control ids count per institution."""

    def __init__(self, institution: Institution) -> None:
        self.institution = institution
        self.sent = 0

    def frame(self, segments: list[str]) -> bytes:
        text = self.institution.segment_end.join(segments) + self.institution.segment_end
        return (
            START_BLOCK + text.encode(self.institution.python_codec, errors="replace") + END_BLOCK
        )

    def msh(self, at: datetime, message_type: str, structure: str) -> str:
        self.sent += 1
        i = self.institution
        control_id = f"{i.code}{self.sent:09d}"
        timestamp = ts(at) + ("+0800" if i.hl7_version >= "2.5" else "")
        charset = i.msh18 if i.msh18_on_adt or not message_type.startswith("ADT") else ""
        return (
            f"MSH|^~\\&|{i.system}|{i.code}|HEALTHSTREAM|HS|{timestamp}||{message_type}^{structure}|"
            f"{control_id}|P|{i.hl7_version}|||AL|NE||{charset}"
        )

    def pid(self, r: Registration) -> str:
        identifiers = [f"{r.local_id}^^^{self.institution.code}^MR"]
        if r.id_number:
            identifiers.append(f"{r.id_number}^^^CHN^NNCHN")
        names = []
        if r.family is not None:
            names.append(_xpn(r.family, r.given or "", r.names_swapped, "L"))
        if r.family_pinyin is not None:
            names.append(
                _xpn(
                    r.family_pinyin.upper(),
                    (r.given_pinyin or "").upper(),
                    r.names_swapped,
                    "A" if names else "L",
                )
            )
        a = r.address
        if self.institution.python_codec == "ascii":
            address = (
                f"{escape(a.text_pinyin)}^^{a.district.city_pinyin}^^^CHN^H^^{a.district.code}"
            )
        else:
            d = a.district
            address = f"{escape(a.street)}{a.number}号^^{d.city}^{d.province}^^CHN^H^^{d.code}"
        phone = _phone_as_written(self.institution, r.phone)
        sex = "M" if r.male else "F"
        return (
            f"PID|1||{'~'.join(identifiers)}||{'~'.join(names)}||{dt(r.birth_date)}|{sex}"
            f"|||{address}||{phone}"
        )

    def z(self, r: Registration) -> list[str]:
        if self.institution.z_segment == "ZPI":
            return [f"ZPI|1|{'职工医保' if int(r.local_id[-1:] or 0) % 2 else '居民医保'}|汉族"]
        if self.institution.z_segment == "ZVS":
            return ["ZVS|1|APP"]
        return []

    def adt(
        self, r: Registration, event: str, at: datetime, visit_id: str = "", ward: str = ""
    ) -> bytes:
        patient_class = "I" if event == "A01" else "O"
        location = ward or "MZ"
        segments = [
            self.msh(at, f"ADT^{event}", "ADT_A01"),
            f"EVN|{event}|{ts(at)}",
            self.pid(r),
            f"PV1|1|{patient_class}|{location}||||||||||||||||{visit_id}",
            *self.z(r),
        ]
        return self.frame(segments)

    def admission(self, admission: Admission) -> bytes:
        return self.adt(
            admission.registration, "A01", admission.at, admission.visit_id, admission.ward
        )

    def merge(self, surviving: Registration, merged_local_id: str, at: datetime) -> bytes:
        """ADT^A40: `surviving` stays; the duplicate record `merged_local_id` is merged into it."""
        segments = [
            self.msh(at, "ADT^A40", "ADT_A39"),
            f"EVN|A40|{ts(at)}",
            self.pid(surviving),
            f"MRG|{merged_local_id}^^^{self.institution.code}^MR",
        ]
        return self.frame(segments)

    def diagnosis(self, d: Diagnosis) -> bytes:
        segments = [
            self.msh(d.at, "ADT^A08", "ADT_A01"),
            f"EVN|A08|{ts(d.at)}",
            self.pid(d.registration),
            _pv1("O", "MZ", d.visit_id, d.at),
            f"DG1|1||{d.icd10}^{escape(d.display)}^I10||{ts(d.at)}|{'F' if d.final else 'W'}",
        ]
        return self.frame(segments)

    def labs(self, results: list[LabResult]) -> bytes:
        first = results[0]
        segments = [
            self.msh(report_sent_at(first), "ORU^R01", "ORU_R01"),
            self.pid(first.registration),
            _pv1("O", "MZ", first.order_id, first.at),
            f"OBR|1|{first.order_id}|{first.order_id}-F|LAB^检验^L|||{ts(first.at)}",
        ]
        for index, result in enumerate(results, start=1):
            code = self.institution.labs[result.test]
            value = result.value * code.per_canonical
            text = (
                f"{value:.1f}"
                if code.per_canonical != 1.0 or result.test == "hba1c"
                else f"{value:.2f}"
            )
            flag = _flag(value, code.range_text)
            observation = f"{code.code}^{escape(code.display)}^L"
            unit = result.unit_sent or code.unit
            segments.append(
                f"OBX|{index}|NM|{observation}||{text}|{unit}|{code.range_text}|{flag}"
                f"|||F|||{ts(result.at)}|||||{ts(result.at + ANALYSED_AFTER)}"
            )
        return self.frame(segments)

    def vitals(self, v: VitalSigns) -> bytes:
        observations = [
            ("RR", "呼吸频率", "NM", str(v.respiratory_rate), "/min"),
            ("SPO2", "血氧饱和度", "NM", str(v.spo2), "%"),
            ("O2", "吸氧", "CE", "Y^吸氧" if v.on_oxygen else "N^空气", ""),
            ("SBP", "收缩压", "NM", str(v.systolic), "mmHg"),
            ("DBP", "舒张压", "NM", str(v.diastolic), "mmHg"),
            ("HR", "脉搏", "NM", str(v.pulse), "/min"),
            ("ACVPU", "意识", "CE", v.consciousness, ""),
            ("TEMP", "体温", "NM", f"{v.temperature:.1f}", "Cel"),
        ]
        segments = [
            self.msh(v.at, "ORU^R01", "ORU_R01"),
            self.pid(v.registration),
            _pv1("I", "ICU", v.visit_id, v.admitted_at),
            f"OBR|1|{v.visit_id}-{ts(v.at)}||VS^生命体征^L|||{ts(v.at)}",
        ]
        for index, (code, name, kind, value, unit) in enumerate(observations, start=1):
            sent = vital_code(code, v)
            segments.append(
                f"OBX|{index}|{kind}|{sent}^{name}^L||{value}|{unit}|||||F|||{ts(v.at)}"
            )
        return self.frame(segments)


def _pv1(patient_class: str, location: str, visit_id: str, admitted: datetime | None) -> str:
    """PV1 with the visit number (PV1-19) and its start (PV1-44)."""
    start = ts(admitted) if admitted else ""
    return f"PV1|1|{patient_class}|{location}{'|' * 16}{visit_id}{'|' * 25}{start}"


def _xpn(family: str, given: str, swapped: bool, name_type: str) -> str:
    first, second = (given, family) if swapped else (family, given)
    return f"{escape(first)}^{escape(second)}^^^^^{name_type}"


def _phone_as_written(institution: Institution, phone: str | None) -> str:
    if phone is None:
        return ""
    if institution.code == "SH02":
        return f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"
    if institution.code == "BJ03":
        return f"^PRN^CP^^86^^^^^^^{phone}"
    return phone


def _flag(value: float, range_text: str) -> str:
    low, high = parse_range(range_text)
    if low is not None and value < low:
        return "L"
    if high is not None and value > high:
        return "H"
    return "N"


def parse_range(text: str) -> tuple[float | None, float | None]:
    text = text.strip()
    if text.startswith("<"):
        return None, float(text[1:])
    if text.startswith(">"):
        return float(text[1:]), None
    for separator in ("-", "_"):
        if separator in text:
            low, high = text.split(separator, 1)
            return float(low), float(high)
    return None, None
