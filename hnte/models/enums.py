"""Enumerations shared by tables and pure rules (standard library only)."""

from __future__ import annotations

from enum import StrEnum


class TechField(StrEnum):
    """The 8 national key fields (国家重点支持的高新技术领域)."""

    ELECTRONIC_INFORMATION = "电子信息"
    BIO_MEDICINE = "生物与新医药"
    AEROSPACE = "航空航天"
    NEW_MATERIALS = "新材料"
    HIGH_TECH_SERVICES = "高技术服务"
    NEW_ENERGY = "新能源与节能"
    RESOURCES_ENVIRONMENT = "资源与环境"
    ADVANCED_MANUFACTURING = "先进制造与自动化"


class ApplicationKind(StrEnum):
    FIRST_TIME = "first_time"  # 首次申报
    RENEWAL = "renewal"  # 重新认定

    @property
    def label_zh(self) -> str:
        return "首次申报" if self is ApplicationKind.FIRST_TIME else "重新认定"


class DistrictDecision(StrEnum):
    RECOMMENDED = "recommended"  # 推荐
    RETURNED = "returned"  # 退回


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


class ExpertKind(StrEnum):
    TECHNICAL = "technical"
    FINANCIAL = "financial"
