"""The HTML report: one self-contained page (inline CSS and SVG plots) built from the store."""

from dreamteam.report.build import write_report

__all__ = ["write_report"]
