"""Delivery: the outbox sends each committed notification through its channel's transport.

In: notifications committed by the engine (or found undelivered at start). Out: one attempt at
a time per notification, through a lane per channel (rate limit, workers, retries with
backoff), each outcome recorded through storage. It never sends a notification that is not
committed, and never lets a provider's answer carry a secret into a log or the database.
"""
