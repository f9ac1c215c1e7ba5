"""The engine: one actor per service runs `pager.domain.decide`, and the escalation deadlines.

In: events from the front (alert, ack, healthy, a silence started or ended), and deadlines that
pass. Out: each decision committed through storage's group commit before its reply is set, and
its notifications handed to delivery. It is the only place that changes a service's state; it
opens no socket and knows nothing of the database behind the storage port.
"""
