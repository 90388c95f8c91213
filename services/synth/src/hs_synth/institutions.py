"""The sending institutions and their habits: formats, HL7 versions, character sets, line
endings, identifiers, local lab codes and units. Ingestion's per-source mapping files describe
the same sources from the receiving side."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Channel(StrEnum):
    HL7 = "hl7"  # HL7 v2 over MLLP
    CLINIC_JSON = "clinic-json"  # HTTP POST of the clinic's own JSON
    CLINIC_CSV = "clinic-csv"  # HTTP POST of CSV batches
    FHIR = "fhir"  # HTTP POST of FHIR R4 Bundles
    DEVICES = "devices"  # HTTP POST of wearable reading batches


@dataclass(frozen=True)
class LabCode:
    """How one institution codes and reports one test."""

    code: str
    display: str
    unit: str  # as the institution writes it
    per_canonical: float  # local value = canonical value x per_canonical
    range_text: str  # reference range as sent


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    channel: Channel
    city: str | None  # city pinyin of the catchment; None: everywhere
    system: str
    hl7_version: str = ""
    python_codec: str = "utf-8"
    msh18: str = ""  # declared character set; may not match python_codec (a lying sender)
    msh18_on_adt: bool = True  # False: the registration system leaves MSH-18 empty
    segment_end: str = "\r"
    han_names: bool = True
    pinyin_names: bool = False
    local_id_prefix: str = ""
    labs: dict[str, LabCode] = field(default_factory=dict)
    z_segment: str = ""


# Canonical units: glucose mmol/L, creatinine umol/L, HbA1c %, potassium mmol/L.
MGDL_PER_MMOLL_GLUCOSE = 18.016
UMOLL_PER_MGDL_CREATININE = 88.4

HZ01 = Institution(
    "HZ01", "杭州市第一人民医院", Channel.HL7, "Hangzhou", "HIS", hl7_version="2.5",
    python_codec="utf-8", msh18="UNICODE UTF-8", segment_end="\r",
    han_names=True, pinyin_names=True,
    local_id_prefix="HZ", z_segment="ZPI",
    labs={
        "glucose": LabCode("GLU", "葡萄糖", "mmol/L", 1.0, "3.9-6.1"),
        "creatinine": LabCode("CREA", "肌酐", "umol/L", 1.0, "57-111"),
        "hba1c": LabCode("HBA1C", "糖化血红蛋白", "%", 1.0, "4.0-6.0"),
        "potassium": LabCode("K", "钾", "mmol/L", 1.0, "3.5-5.3"),
    },
)  # fmt: skip
SH02 = Institution(
    "SH02", "上海市第六人民医院", Channel.HL7, "Shanghai", "HIS", hl7_version="2.4",
    python_codec="gb18030", msh18="GB 18030-2000", msh18_on_adt=False, segment_end="\r\n",
    han_names=True, pinyin_names=False,
    local_id_prefix="", z_segment="ZVS",
    labs={
        "glucose": LabCode("10011", "血糖", "mmol/L", 1.0, "3.90-6.10"),
        "creatinine": LabCode("10023", "肌酐(酶法)", "μmol/L", 1.0, "44-133"),
        "hba1c": LabCode("10101", "糖化血红蛋白A1c", "%", 1.0, "<6.5"),
        "potassium": LabCode("10003", "血钾", "mmol/L", 1.0, "3.5_5.5"),
    },
)  # fmt: skip
BJ03 = Institution(
    "BJ03", "北京市朝阳区中心医院", Channel.HL7, "Beijing", "LIS", hl7_version="2.3.1",
    python_codec="ascii", msh18="ASCII", segment_end="\n", han_names=False, pinyin_names=True,
    local_id_prefix="BJ-", z_segment="",
    labs={
        "glucose": LabCode("GLU-S", "GLUCOSE SERUM", "mg/dL", MGDL_PER_MMOLL_GLUCOSE, "70-110"),
        "creatinine": LabCode(
            "CR", "CREATININE", "mg/dL", 1 / UMOLL_PER_MGDL_CREATININE, "0.6-1.3"
        ),
        "hba1c": LabCode("A1C", "HEMOGLOBIN A1C", "%", 1.0, "<6.0"),
        "potassium": LabCode("K-S", "POTASSIUM", "mmol/L", 1.0, ">3.5"),
    },
)  # fmt: skip
HZC01 = Institution(
    "HZC01", "杭州市上城区社区卫生服务中心", Channel.CLINIC_JSON, "Hangzhou", "JMJK",
    local_id_prefix="JM",
    labs={
        "glucose": LabCode("xt", "血糖", "mg/dL", MGDL_PER_MMOLL_GLUCOSE, "70-110"),
        "hba1c": LabCode("thxhdb", "糖化血红蛋白", "%", 1.0, "4-6"),
    },
)  # fmt: skip
SHC02 = Institution(
    "SHC02", "上海市徐汇区社区卫生服务中心", Channel.CLINIC_CSV, "Shanghai", "CHSS",
    local_id_prefix="",
    labs={
        "glucose": LabCode("FBG", "空腹血糖", "mmol/L", 1.0, "3.9-6.1"),
        "creatinine": LabCode("SCR", "血肌酐", "umol/L", 1.0, "44-133"),
    },
)  # fmt: skip
F01 = Institution(
    "F01", "杭州市区域卫生信息平台", Channel.FHIR, "Hangzhou", "FHIR", local_id_prefix=""
)
W01 = Institution("W01", "康联可穿戴云平台", Channel.DEVICES, None, "cloud")

ALL: tuple[Institution, ...] = (HZ01, SH02, BJ03, HZC01, SHC02, F01, W01)
REGISTERING: tuple[Institution, ...] = (HZ01, SH02, BJ03, HZC01, SHC02, F01)

LOINC = {
    "glucose": ("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L"),
    "creatinine": ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L"),
    "hba1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%"),
    "potassium": ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L"),
}
