"""The lab's own description, set in the web: its name, address and opening hours.

One row (id 1). Kept small on purpose so that other parts of the lab's identity (legal
mentions on statements, say) are added as columns here, not as another settings table.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from hub.models.base import UTCDateTime, utcnow

LAB_ROW = 1
NAME_MAX = 120
ADDRESS_MAX = 500
OPENING_MAX = 500


class LabSettings(SQLModel, table=True):
    __tablename__ = "lab_settings"
    id: int = Field(default=LAB_ROW, primary_key=True)
    name: str = Field(max_length=NAME_MAX)
    address: str = Field(default="", max_length=ADDRESS_MAX)
    # The weekly opening hours, as the reports read them: "tue-fri 14:00-19:00; sat 10:00-18:00".
    opening_hours: str = Field(max_length=OPENING_MAX)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changed_by: str = Field(default="", max_length=100)
