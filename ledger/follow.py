"""Following a ledger with the `eventsourcing` library's own machinery.

A ledger is an `eventsourcing` application (`ledger.journal.JournalApplication`, named
"GeoLedger") whose notification log holds every committed batch. A `ProcessApplication`
can `follow` that log: it pulls the notifications after the last one it has processed,
and records its own new events *together with* the position it reached (a tracking
record) in one transaction of its own store. So a follower that crashes and restarts
neither misses nor repeats a batch: exactly-once processing, as the library promises,
on top of the ledger's at-least-once change stream.

`LedgerFollower` is that process application with the ledger's record format (its
transcoder) and its events decoded into `Change` objects; a subclass implements
`on_change` and collects its aggregates' events on the processing event:

    class Totals(LedgerFollower):
        def on_change(self, change, processing_event):
            for t in change.transfers:
                ...  # processing_event.collect_events(aggregate)

    totals = Totals(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": "totals.db"})
    totals.follow_ledger(ledger.notification_log)   # or ChangeFeed.open(url).notification_log
    totals.pull()                                   # whenever it should catch up

See docs/changes.md for the whole recipe.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Transcoder
from eventsourcing.system import NotificationLog, ProcessApplication

from ledger.changes import Change, to_change
from ledger.journal import Journal, JournalApplication
from ledger.replay import CommittedBatch
from ledger.transcoder import AttachmentTranscoder


class LedgerFollower(ProcessApplication[Any]):
    """An `eventsourcing` process application that follows a ledger's committed batches."""

    leader_name = JournalApplication.name

    def construct_transcoder(self) -> Transcoder:
        """The ledger's record format, for reading its notifications (and for this
        application's own records, which need nothing else)."""
        transcoder = AttachmentTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def follow_ledger(self, log: NotificationLog) -> None:
        """Follow a ledger's notification log (`Ledger.notification_log` or
        `ChangeFeed.notification_log`)."""
        self.follow(self.leader_name, log)

    def pull(self) -> None:
        """Process every batch committed since the last one this application processed."""
        self.pull_and_process(self.leader_name)

    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        """The library's hook: decodes a committed batch and hands it to `on_change`."""
        if isinstance(domain_event, Journal.BatchEvent):
            self.on_change(to_change(CommittedBatch(
                domain_event.originator_version, domain_event.kind, domain_event.rows, domain_event.expired_at,
                domain_event.last_timestamp, domain_event.prev_hash, domain_event.hash, domain_event.expired,
                domain_event.failed,
            )), processing_event)

    def on_change(self, change: Change, processing_event: ProcessingEvent[Any]) -> None:
        """Handle one committed batch; collect new events with
        `processing_event.collect_events(...)` so that they are recorded atomically with
        the position reached. The default does nothing."""


__all__ = ["LedgerFollower"]
