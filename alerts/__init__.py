"""Alerts: rules over detector results and infra metrics, an Alertmanager-like lifecycle, emails and retrain webhooks.

The flow, one module per step: `config` (alerts.yaml, validated against the registry) -> `signals` (one value
per window) -> `lifecycle` (pure state machine with `for`, `clear_for` and hysteresis) -> `evaluate` (the pass:
steps alerts, applies `inhibit` and `silences`, decides who is told, renders with `render` and `payload`, queues
in `outbox`) -> `dispatch` (attempts through `channels` and `notify/`, retries, dead-letters). `store` keeps
alert states and the audit trail; `signing` is the Standard Webhooks signer and the receivers' verifier.
"""
