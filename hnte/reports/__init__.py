"""Reports people read: the year's target progress, pipeline and lists, as .xlsx and HTML.

``data.gather`` reads everything a report shows in a handful of aggregate queries;
``xlsx.write_xlsx`` and ``html.write_html`` only lay it out.
"""

from hnte.reports.data import ReportData, gather

__all__ = ["ReportData", "gather"]
