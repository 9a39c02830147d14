"""Alert rules, lifecycle and notifiers (issue 4, in progress).

Built so far: `lifecycle` (the pending/firing/resolved state machine with `for`, `clear_for` and hysteresis, pure),
`signing` (Standard Webhooks signatures and a stdlib-only verifier for receivers), `payload` (the retrain
payload v1 and presets), `config` (`alerts.yaml`: channels and rules, validated as a whole and against the model
registry), `notify/` (the webhook and email notifiers, one attempt each, classified for retry, and the
jittered backoff). Not yet: rule evaluation over detector results, alert state in ClickHouse, silences,
inhibition, the persisted outbox, the message templates.
"""
