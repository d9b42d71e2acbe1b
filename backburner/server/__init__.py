"""The job server: workers, fetcher, and background components."""

from backburner.server.server import Server

__all__ = ["Server"]
