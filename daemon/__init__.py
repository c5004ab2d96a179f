"""upcheck: probe every URL of a CSV concurrently, forever, and export what it sees.

Data flows one way: targets source -> scheduler -> probe -> results store -> sinks.
"""

__version__ = "0.1.0"
