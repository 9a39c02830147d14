"""Grafana dashboards as code (issue 5); nothing here yet."""
