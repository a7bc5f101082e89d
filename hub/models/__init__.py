"""The hub's SQLModel tables and their API schemas, one module per family.

Every name is re-exported here, so `from hub.models import X` works for any table, and
importing this package registers every table on `SQLModel.metadata` (what Alembic compares).
"""

from __future__ import annotations

from sqlmodel import SQLModel

from hub.models.audit import (
    AuditEntry,
    AuditPublic,
)
from hub.models.base import (
    Int64,
    UTCDateTime,
    utcnow,
)
from hub.models.billing import (
    CREDIT_NOTE,
    STATEMENT,
    BalanceMovement,
    BillingAccount,
    BillingMonth,
    BillingRate,
    Statement,
    StatementLine,
)
from hub.models.events import (
    BusyPeriod,
    DeadLetter,
    Event,
    MachineCounters,
    MachineSession,
    PrintJob,
    RetentionRule,
    SessionPublic,
    TelemetryPoint,
    TelemetrySample,
)
from hub.models.machines import (
    AgentSeq,
    Machine,
    MachineBase,
    MachineKind,
    MachinePublic,
    MachineType,
)
from hub.models.maintenance import (
    Downtime,
    DowntimeCause,
    Incident,
    IncidentClose,
    IncidentCreate,
    IncidentPublic,
    MaintenanceCounter,
    MaintenanceSignOff,
    MaintenanceTaskRow,
)
from hub.models.notifications import (
    Notification,
    NotificationDefault,
    NotificationPreference,
    NotificationPublic,
    OutboxStatus,
    PreferencePublic,
    Webhook,
    WebhookCreated,
    WebhookPublic,
    new_notification_id,
    new_webhook_secret,
)
from hub.models.people import (
    ApiToken,
    Badge,
    Member,
    MemberBase,
    MemberCategory,
    MemberCategoryChange,
    MemberPublic,
    MemberStatus,
    Role,
    TokenPublic,
    Training,
    TrainingLevel,
    User,
    UserPublic,
    new_member_ref,
)

# Every table of the hub, for Alembic and create_all: complete once this package is imported.
metadata = SQLModel.metadata

__all__ = [
    "AgentSeq",
    "ApiToken",
    "AuditEntry",
    "AuditPublic",
    "Badge",
    "BalanceMovement",
    "BillingAccount",
    "BillingMonth",
    "BillingRate",
    "BusyPeriod",
    "CREDIT_NOTE",
    "DeadLetter",
    "Downtime",
    "DowntimeCause",
    "Event",
    "Incident",
    "IncidentClose",
    "IncidentCreate",
    "IncidentPublic",
    "Int64",
    "Machine",
    "MachineBase",
    "MachineCounters",
    "MachineKind",
    "MachinePublic",
    "MachineSession",
    "MachineType",
    "MaintenanceCounter",
    "MaintenanceSignOff",
    "MaintenanceTaskRow",
    "Member",
    "MemberBase",
    "MemberCategory",
    "MemberCategoryChange",
    "MemberPublic",
    "MemberStatus",
    "Notification",
    "NotificationDefault",
    "NotificationPreference",
    "NotificationPublic",
    "OutboxStatus",
    "PreferencePublic",
    "PrintJob",
    "RetentionRule",
    "Role",
    "STATEMENT",
    "SessionPublic",
    "Statement",
    "StatementLine",
    "TelemetryPoint",
    "TelemetrySample",
    "TokenPublic",
    "Training",
    "TrainingLevel",
    "UTCDateTime",
    "User",
    "UserPublic",
    "Webhook",
    "WebhookCreated",
    "WebhookPublic",
    "metadata",
    "new_member_ref",
    "new_notification_id",
    "new_webhook_secret",
    "utcnow",
]
