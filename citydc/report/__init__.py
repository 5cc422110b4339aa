"""Reports read from Prometheus: the monthly 95th-percentile bandwidth report (``citydc report bandwidth``).

The flow: cli.report_cmd → config (report:, alerting.prometheus_url) → report.bandwidth (month, queries of the
recording rules, statistics) → report.promapi (Prometheus HTTP API) → table, CSV, JSON, report.chart (PNG).
"""

from citydc.report.bandwidth import BandwidthReport, Subject, build_report, nearest_rank, parse_month
from citydc.report.promapi import PrometheusClient, PrometheusError

__all__ = ["BandwidthReport", "PrometheusClient", "PrometheusError", "Subject", "build_report", "nearest_rank",
           "parse_month"]
