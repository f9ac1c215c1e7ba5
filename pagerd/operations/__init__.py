"""Operations: how the daemon shows itself to whoever runs it.

In: counters and timings from every layer, the systemd environment. Out: metrics (and their
HTTP endpoint), log lines safe for a terminal or the journal, systemd notifications and socket
activation, start-up failures in one line, the outcome of the last reload; the accept loop both
servers share (reporting a want of files in one line) and the open-file limit. It never decides or
stores anything that pages someone: operations only report.
"""
