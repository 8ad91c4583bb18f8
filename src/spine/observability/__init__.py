"""Logs, traces and metrics: how Spine tells what it is doing (issue 5)."""
