"""pagerd: an on-call pager. This package is the pure core, the protocol and the client."""

__version__ = "0.1.0"
