"""Grafana dashboards as code: the fleet, model and service dashboards on the ClickHouse data source plugin.

`board` wraps the foundation SDK's builder and records each panel's query with the columns it must return;
`fleet`, `model` and `service` define the dashboards; `generate` writes the committed JSON; `macros` expands
Grafana's macros so the queries can run outside Grafana; `push` uploads to a running Grafana.
"""
