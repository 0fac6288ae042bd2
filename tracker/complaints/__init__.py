"""The complaint department's views: read-only answers to "who is keeping the customer waiting?".

One private module per job, each with its response schemas beside its queries; the web layer
(``tracker.web.api`` and ``tracker.web.console``) imports only what is listed here::

    _queue.py        the overdue queue: late and escalated parties of open cases, worst first
    _disputes.py     customers dissatisfied with a resolution
    _scorecards.py   a partner's responsiveness from the timeline, and its activity over time
    _deliveries.py   outbox rows of a case, and webhook deliveries with their dead-letter queue
    _exports.py      cases, events, parties, notifications and scorecards as streamed CSV or NDJSON

Nothing here writes: nudging lives with the cases, re-sending with ``notifications.dispatcher``.
"""

from tracker.complaints._deliveries import DeliveryList, DeliveryOut, deliveries, delivery_out
from tracker.complaints._disputes import DisputeList, disputes
from tracker.complaints._exports import (
    EXPORT_DATASETS,
    EXPORT_FORMATS,
    Export,
    count_export,
    export_columns,
    export_records,
    export_stream,
    prepare_export,
)
from tracker.complaints._queue import OverdueList, overdue
from tracker.complaints._scorecards import Activity, Scorecard, activity, scorecard, scorecards

__all__ = [
    "Activity",
    "DeliveryList",
    "DeliveryOut",
    "DisputeList",
    "EXPORT_DATASETS",
    "EXPORT_FORMATS",
    "Export",
    "OverdueList",
    "Scorecard",
    "activity",
    "count_export",
    "deliveries",
    "delivery_out",
    "disputes",
    "export_columns",
    "export_records",
    "export_stream",
    "overdue",
    "prepare_export",
    "scorecard",
    "scorecards",
]
