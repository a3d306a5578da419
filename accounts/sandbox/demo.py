"""Demo data seeded at the sandbox's first start (documented in accounts/README.md).

The ID numbers are synthetic with valid GB 11643 check digits; the phones are not real
subscribers' numbers as far as we know, and nothing here leaves the sandbox's database.
"""
from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import SandboxService

DEMO_PASSWORD = "Xuexin@2024"

# In creation order: zhangsan02 re-registers 张三's ID number, so it starts pending_identity.
DEMO_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {"username": "zhangsan01", "name": "张三", "id_type": "resident_id", "id_number": "110101199903071239",
     "phone": "13800138001", "email": "zhangsan01@example.com", "status": "active"},
    {"username": "zhangsan02", "name": "张三", "id_type": "resident_id", "id_number": "110101199903071239",
     "phone": "13800138002", "email": None, "status": "pending_identity", "re_register": True},
    {"username": "lisi2017", "name": "李四", "id_type": "resident_id", "id_number": "110105200006152347",
     "phone": "13900139003", "email": None, "status": "active"},
    {"username": "wangwu88", "name": "王五", "id_type": "resident_id", "id_number": "310104199811223457",
     "phone": "13700137004", "email": "wangwu88@example.com", "status": "active"},
    {"username": "zhaoliu01", "name": "赵六", "id_type": "resident_id", "id_number": "33010620000101011X",
     "phone": "13600136005", "email": None, "status": "active"},
    {"username": "chenqi01", "name": "陈七", "id_type": "hk_macao_permit", "id_number": "H12345678",
     "phone": "15000150006", "email": None, "status": "active"},
)

# 学籍/学历 records the sandbox checks route 4 against, per ID number.
STUDENT_RECORDS: tuple[dict[str, Any], ...] = (
    {"id_type": "resident_id", "id_number": "110101199903071239", "kind": "enrolled", "school": "北京大学",
     "level": "本科", "student_no": "1700012345", "enrolment_year": 2017},
    {"id_type": "resident_id", "id_number": "110101199903071239", "kind": "graduate", "school": "北京大学",
     "level": "本科", "certificate_no": "100011202105001234", "graduation_year": 2021},
    {"id_type": "resident_id", "id_number": "110105200006152347", "kind": "enrolled", "school": "北京大学",
     "level": "本科", "student_no": "1700012346", "enrolment_year": 2017},
    {"id_type": "resident_id", "id_number": "310104199811223457", "kind": "graduate", "school": "复旦大学",
     "level": "硕士研究生", "certificate_no": "102461202306000789", "graduation_year": 2023},
)


def seed(service: "SandboxService", conn: sqlite3.Connection) -> None:
    """Create the demo accounts (through the real registration rules) and student records."""
    for acct in DEMO_ACCOUNTS:
        service._register(conn, username=acct["username"], pw_hash=service.hash_password(DEMO_PASSWORD), name=acct["name"],
                          id_type=acct["id_type"], id_number=acct["id_number"], phone=acct["phone"],
                          email=acct["email"], re_register=acct.get("re_register", False), client_id=None)
    for rec in STUDENT_RECORDS:
        service.add_student_record(conn, rec["id_type"], rec["id_number"], rec)
