"""The two community clinics' own formats.

HZC01 posts JSON documents whose field names are pinyin initials of the Chinese data
element names (xm 姓名, xb 性别, csrq 出生日期, sfzh 身份证号, lxdh 联系电话, jzdz 居住地址,
qhdm 区划代码 …)
and reports glucose in mg/dL. SHC02 uploads CSV batches, one row per registration, result or
diagnosis.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hs_synth.events import Diagnosis, LabResult
from hs_synth.registrations import Registration

CST = timezone(timedelta(hours=8))

CSV_COLUMNS = (
    "record_type", "patient_no", "name", "gender", "birthday", "id_card", "mobile", "address",
    "area_code", "event_time", "item_code", "item_name", "result", "unit", "ref_range",
    "diagnosis_code", "diagnosis_name",
)  # fmt: skip


def iso(at: datetime) -> str:
    return at.replace(tzinfo=CST).isoformat()


def _han_name(r: Registration) -> str:
    if r.family is None:
        return f"{r.given_pinyin or ''} {r.family_pinyin or ''}".strip().upper()
    return f"{r.given}{r.family}" if r.names_swapped else f"{r.family}{r.given}"


def json_registration(r: Registration) -> bytes:
    document: dict[str, Any] = {
        "jgdm": r.institution.code,
        "lx": "dj",
        "jmbh": r.local_id,
        "xm": _han_name(r),
        "xb": "1" if r.male else "2",
        "csrq": r.birth_date.isoformat() if r.birth_date else None,
        "sfzh": r.id_number,
        "lxdh": r.phone,
        "jzdz": r.address.text,
        "qhdm": r.address.district.code,
        "sj": iso(r.registered_at),
    }
    return _json(document)


def json_labs(results: list[LabResult]) -> bytes:
    first = results[0]
    items = []
    for result in results:
        code = first.registration.institution.labs[result.test]
        items.append(
            {
                "xmdm": code.code,
                "xmmc": code.display,
                "jg": round(result.value * code.per_canonical, 1),
                "dw": code.unit,
                "ckfw": code.range_text,
            }
        )
    return _json(
        {
            "jgdm": first.registration.institution.code,
            "lx": "jy",
            "jmbh": first.registration.local_id,
            "jcsj": iso(first.at),
            "jybh": first.order_id,
            "xm": items,
        }
    )


def json_diagnosis(d: Diagnosis) -> bytes:
    r = d.registration
    return _json(
        {
            "jgdm": r.institution.code,
            "lx": "zd",
            "jmbh": r.local_id,
            "zddm": d.icd10,
            "zdmc": d.display,
            "sj": iso(d.at),
            "jzbh": d.visit_id,
        }
    )


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def csv_registration_row(r: Registration) -> dict[str, str]:
    return {
        "record_type": "patient",
        "patient_no": r.local_id,
        "name": _han_name(r),
        "gender": "男" if r.male else "女",
        "birthday": f"{r.birth_date:%Y/%m/%d}" if r.birth_date else "",
        "id_card": r.id_number or "",
        "mobile": r.phone or "",
        "address": r.address.text,
        "area_code": r.address.district.code,
        "event_time": f"{r.registered_at:%Y-%m-%d %H:%M:%S}",
    }


def csv_lab_row(result: LabResult) -> dict[str, str]:
    code = result.registration.institution.labs[result.test]
    return {
        "record_type": "lab",
        "patient_no": result.registration.local_id,
        "event_time": f"{result.at:%Y-%m-%d %H:%M:%S}",
        "item_code": code.code,
        "item_name": code.display,
        "result": f"{result.value * code.per_canonical:.2f}",
        "unit": code.unit,
        "ref_range": code.range_text,
    }


def csv_diagnosis_row(d: Diagnosis) -> dict[str, str]:
    return {
        "record_type": "diagnosis",
        "patient_no": d.registration.local_id,
        "event_time": f"{d.at:%Y-%m-%d %H:%M:%S}",
        "diagnosis_code": d.icd10,
        "diagnosis_name": d.display,
    }


def csv_batch(rows: list[dict[str, str]], columns: tuple[str, ...] = CSV_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
