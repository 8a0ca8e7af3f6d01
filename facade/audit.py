"""``threadbox.audit``: the docs/semantics.md §7 audit of a whole store (see
``threadbox.application.audit``)."""

from threadbox.application.audit import AuditReport, ThreadAudit, audit, audit_thread

__all__ = ["AuditReport", "ThreadAudit", "audit", "audit_thread"]
