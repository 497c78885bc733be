"""Deterministic sample inbox: `python -m pipeline.samples --period 2020-H1 --out inbox`.

Phường Đức Chính sends the seed report's own figures, typed as the seed shows them ("02", "8.28",
"2.379", "gần 8.000"); most other units send plausible figures; a few make the typical slips of
DOMAIN.md; a few send nothing. `SAMPLES` says what each file is meant to carry, so a test can check
that the committed inbox still reads as intended.
"""

from __future__ import annotations

# The seed report of phường Đức Chính, 2020-H1, as typed (text where the seed has text).
DUC_CHINH: dict[str, object] = {
    "area_ha": 628, "households": "2.379", "population": "gần 8.000", "quarters": 6,
    "production_value_bn": "785,87", "income_per_capita_mn": "94,34", "board_directors": "01",
    "board_deputies": "02", "board_total": "03", "culture_houses": 6, "law_bookcases": 6,
    "conferences": "trên 20", "conference_attendees": "2.215", "reporter": "Nguyễn Thị Hoa",
    "phone": "0203 3870 123", "report_date": "15/6/2020",
    "literacy.classes": 0, "vocational.classes": 0, "law.classes": 0,
    "health.classes": "02", "health.participants": 350,
    "economy.classes": "03", "economy.participants": 150,
    "other.classes": "02", "other.participants": 142,
    "arts_sports.classes": 10, "arts_sports.participants": 186,
    "total.classes": 17, "total.participants": "8.28",
    "literacy_rate": 100, "learners": 828, "poor_households": 0, "near_poor_households": 31,
    "waste_collection_rate": "92,0", "cultural_family_rate": "96,5", "cultural_quarter_rate": 100,
    "mobilization_unions": "Tốt", "mobilization_business": "Chưa triển khai",
    "mobilization_donors": "Chưa triển khai",
    "mobilization_note": "Các đoàn thể phối hợp tốt; doanh nghiệp, nhà hảo tâm chưa tham gia.",
    "plan_tasks": "Tiếp tục duy trì phong trào học tập trong gia đình, dòng họ và cộng đồng.\n"
                  "Phối hợp mở các hội nghị, lớp tập huấn, học nghề cho nhân dân.",
    "target_participation_rate": 70,
}
