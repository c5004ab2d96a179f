"""``make bench``: upcheck against nginx on 127.0.0.1, side by side with the blackbox exporter.

Run as ``python -m bench``; see ``docs/PERFORMANCE.md`` for the method and the results.
Nothing here sends a packet beyond 127.0.0.1, every loop is bounded in count and time, and
every process it starts is stopped at the end.
"""
