"""Telemetry history: raw samples for a while, then one per interval, then aged out.

Numbers in a bucket are averaged; anything else keeps its last value. Run hourly by the hub
and by `atelier hub telemetry compact`.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.core.db import rowcount
from hub.core.settings import Settings
from hub.models import TelemetrySample

log = logging.getLogger(__name__)
CHUNK = 5000


def _bucket(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def _merge(rows: list[TelemetrySample]) -> dict[str, Any]:
    numbers: dict[str, list[float]] = defaultdict(list)
    last: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: r.ts):
        for key, value in row.values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numbers[key].append(float(value))
            else:
                last[key] = value
    merged: dict[str, Any] = {k: round(sum(v) / len(v), 3) for k, v in numbers.items()}
    merged.update({k: v for k, v in last.items() if k not in merged})
    return merged


def compact(
    engine: Engine, *, now: datetime, raw_hours: float, bucket_s: int, keep_days: float
) -> dict[str, int]:
    """Downsample raw samples older than `raw_hours`; delete all older than `keep_days`."""
    raw_cutoff = now - timedelta(hours=raw_hours)
    keep_cutoff = now - timedelta(days=keep_days)
    merged_rows = removed_raw = 0
    with Session(engine) as session:
        deleted = rowcount(
            session.execute(delete(TelemetrySample).where(col(TelemetrySample.ts) < keep_cutoff))
        )
        while True:
            rows = session.exec(
                select(TelemetrySample)
                .where(TelemetrySample.resolution_s == 0, col(TelemetrySample.ts) < raw_cutoff)
                .order_by(col(TelemetrySample.machine), col(TelemetrySample.ts))
                .limit(CHUNK)
            ).all()
            if not rows:
                break
            buckets: dict[tuple[str, datetime], list[TelemetrySample]] = defaultdict(list)
            for row in rows:
                buckets[(row.machine, _bucket(row.ts, bucket_s))].append(row)
            for (machine, start), members in buckets.items():
                session.add(
                    TelemetrySample(
                        machine=machine, ts=start, resolution_s=bucket_s, values=_merge(members)
                    )
                )
                merged_rows += 1
            for row in rows:
                session.delete(row)
            removed_raw += len(rows)
            session.commit()
        session.commit()
    return {"downsampled": removed_raw, "buckets": merged_rows, "aged_out": int(deleted)}


class TelemetryCompactor:
    """Compacts telemetry and applies the retention rules hourly in the hub process."""

    def __init__(self, settings: Settings, engine: Engine, period_s: float = 3600) -> None:
        self.settings, self.engine, self.period_s = settings, engine, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-compact", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                from hub.services.retention import purge  # the retention rules include telemetry's

                counts = purge(self.engine, self.settings, now=datetime.now(UTC))
                log.info("retention applied: %s", counts)
            except Exception:
                log.exception("retention purge failed; will retry")
