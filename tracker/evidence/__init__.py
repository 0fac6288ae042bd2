"""Evidence: attachments kept by digest.

    keep                 clean a received file, make its thumbnail, put both in the store
    record / attach      the row and its ``attachment.added`` event (a party or staff: ``attach``)
    attach_for_customer  the customer's file, from the status page
    list_attachments / find / for_customer / customer_file   who sees what
    erase_for_customer / delete_unreferenced                 erasure
"""

from tracker.evidence._attachments import (
    KINDS,
    AttachmentList,
    AttachmentOut,
    Kept,
    attach,
    attach_for_customer,
    attachment_out,
    customer_file,
    customer_sees,
    default_visibility,
    delete_unreferenced,
    erase_for_customer,
    find,
    for_customer,
    keep,
    list_attachments,
    party_sees,
    record,
)

__all__ = [
    "KINDS",
    "AttachmentList",
    "AttachmentOut",
    "Kept",
    "attach",
    "attach_for_customer",
    "attachment_out",
    "customer_file",
    "customer_sees",
    "default_visibility",
    "delete_unreferenced",
    "erase_for_customer",
    "find",
    "for_customer",
    "keep",
    "list_attachments",
    "party_sees",
    "record",
]
