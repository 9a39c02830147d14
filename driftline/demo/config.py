"""The demo folder: its layout, the refusal to clobber someone else's folder, and the configuration written into it.

Everything the demo uses is a plain file a user can read afterwards and
reuse: `models.yaml` and `alerts.yaml` in the formats of docs/reference.md, a
`tokens.yaml` for the API (the token itself in `api-token`, mode 0600), the
webhook signing secret in `webhook-secret` (0600, never printed), the
reference samples as CSV, and the chDB store in `data/`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from alerts.signing import WebhookSecret

# The three models and what the demo expects of them.
CLASSIFIER = "churn-classifier"
REGRESSOR = "delivery-eta"
BROKEN = "fraud-scorer"
MODELS = (CLASSIFIER, REGRESSOR, BROKEN)

# Short windows, so the story (healthy, then drift, then the late labels) fits in about two minutes.
WINDOW_S = 10
INTERVAL_S = 2  # each model's detector job runs this often (and evaluates its alert rules after each run)
GRACE_S = 2  # a window is detected this long after it ends, so its last events are in
LABEL_LAG_S = 4  # the simulator sends each label this long after its prediction
LABEL_DELAY_S = 6  # ...and the registry tells the detectors to wait this long for them

DRIFT_RULE = f"{CLASSIFIER}-drift"
ACCURACY_RULE = f"{CLASSIFIER}-accuracy"
MISSING_RULE = f"{BROKEN}-missing-values"
EXPECTED_FIRING = {CLASSIFIER: (DRIFT_RULE, ACCURACY_RULE), BROKEN: (MISSING_RULE,)}
"""Rules that must fire for the demo to succeed; every other rule (the regressor's above all) must not."""
RETRAIN_EXPECTED = (CLASSIFIER,)
"""Models whose retrain webhook must arrive (and nobody else's)."""

MARKER = ".driftline-demo"
OWN_ENTRIES = ("data", "emails", "reference", "reports", "webhooks.jsonl", "models.yaml", "alerts.yaml",
               "tokens.yaml", "api-token", "webhook-secret", "link-secret", "summary.json", "demo.log", "broker.log",
               MARKER)


class DemoFolderError(ValueError):
    """The folder cannot be used for the demo; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def emails(self) -> Path:
        return self.root / "emails"

    @property
    def webhooks(self) -> Path:
        return self.root / "webhooks.jsonl"

    @property
    def reference(self) -> Path:
        return self.root / "reference"

    @property
    def models_file(self) -> Path:
        return self.root / "models.yaml"

    @property
    def alerts_file(self) -> Path:
        return self.root / "alerts.yaml"

    @property
    def tokens_file(self) -> Path:
        return self.root / "tokens.yaml"

    @property
    def api_token(self) -> Path:
        return self.root / "api-token"

    @property
    def webhook_secret(self) -> Path:
        return self.root / "webhook-secret"

    @property
    def link_secret(self) -> Path:
        return self.root / "link-secret"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def log(self) -> Path:
        return self.root / "demo.log"

    @property
    def broker_log(self) -> Path:
        return self.root / "broker.log"


def prepare(root: Path, *, force: bool = False) -> Layout:
    """A fresh demo folder at `root`: created if missing; a previous demo's files are replaced.

    A non-empty folder that no demo created is refused (the demo would mix its files with yours) unless
    `force`; even then only the demo's own file names are replaced, nothing else is touched.
    """
    root = root.expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise DemoFolderError(f"{root} is a file, not a folder; give --dir another path")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).exists() and not force:
        raise DemoFolderError(f"{root} is not empty and is not a previous demo folder; give --dir a new or empty "
                              "folder, or add --force to write the demo's files into it anyway")
    root.mkdir(parents=True, exist_ok=True)
    for name in OWN_ENTRIES:
        entry = root / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    layout = Layout(root)
    (root / MARKER).write_text("This folder was written by `driftline demo`; running it again here replaces it.\n")
    layout.emails.mkdir()
    layout.reference.mkdir()
    layout.reports.mkdir()
    return layout


def _private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_secrets(layout: Layout) -> None:
    """The webhook signing secret, the report link secret (the emails' report links then open without a token)
    and an API token (admin scope: the demo is yours to explore)."""
    _private(layout.webhook_secret, WebhookSecret.generate() + "\n")
    _private(layout.link_secret, secrets.token_urlsafe(32) + "\n")
    token = secrets.token_urlsafe(32)
    _private(layout.api_token, token + "\n")
    digest = hashlib.sha256(token.encode()).hexdigest()
    layout.tokens_file.write_text(
        "# API tokens of the demo: the token itself is in api-token (send it as `Authorization: Bearer ...`).\n"
        f"tokens:\n  - {{name: demo, sha256: {digest}, scopes: [admin]}}\n")


def write_models(layout: Layout) -> None:
    layout.models_file.write_text(f"""\
# The model registry of `driftline demo` (the format of docs/reference.md, "Detectors").
# {WINDOW_S}-second windows, detected every {INTERVAL_S} s; each model is compared with the training sample
# uploaded from reference/<model>.csv. Every column, the prediction too, is tested with KS (numbers) or
# chi-square (categories) at p < 0.001: a 200-row window of healthy traffic does not trip them by chance, the
# injected drift gives p-values far below. (The default rule would pick distances, which sit near their
# thresholds on 200 rows.)
defaults:
  window: {WINDOW_S}s
  schedule: {{interval: {INTERVAL_S}s}}
  label_delay: {LABEL_DELAY_S}s
  reference: {{upload: train}}
  drift:
    min_rows: 50
    target: false
    methods: {{numeric: ks, numeric_threshold: 0.001, categorical: chisquare, categorical_threshold: 0.001}}
  quality: {{max_missing_share: 0.05}}
models:
  - name: {CLASSIFIER}          # drifts half-way through; its accuracy drops once the labels arrive
    task: binary_classification
    owner: team-retention
    positive_label: "1"
    features:
      tenure_months: numeric
      monthly_charges: numeric
      contract: categorical
      support_calls: numeric
    performance: {{metrics: [accuracy, roc_auc], max_drop: 0.1, min_rows: 50}}
  - name: {REGRESSOR}              # stays healthy all along
    task: regression
    owner: team-logistics
    features:
      distance_km: numeric
      items: numeric
      hour_of_day: numeric
      region: categorical
    performance: {{metrics: [mae, rmse], max_drop: 0.3, min_rows: 50}}
  - name: {BROKEN}              # a feature pipeline breaks half-way through: missing values
    task: binary_classification
    owner: team-risk
    features:
      amount: numeric
      merchant_category: categorical
      account_age_days: numeric
      velocity_1h: numeric
    performance: {{metrics: [accuracy], max_drop: 0.1, min_rows: 50}}
""")


def write_alerts(layout: Layout, *, smtp_port: int, webhook_url: str) -> None:
    def rules(model: str, metric: str, fire_drop: float) -> str:
        return f"""\
  - name: {model}-drift
    model: {model}
    when: {{dataset_drift: {{fire_share: 0.5, clear_share: 0.25}}}}
    severity: critical
    for: 1
    routes: [ml-owners, retrain]
  - name: {model}-{metric}
    model: {model}
    when: {{performance_drop: {{metric: {metric}, fire_drop: {fire_drop}, clear_drop: {fire_drop / 2}}}}}
    for: 1
    routes: [ml-owners, retrain]
  - name: {model}-missing-values
    model: {model}
    when: {{quality: {{check: missing_share}}}}
    for: 1
    routes: [ml-owners]           # a broken pipeline is for people to fix, not a reason to retrain
"""

    layout.alerts_file.write_text(f"""\
# The alert rules of `driftline demo` (the format of docs/reference.md, "Alerts"). Emails go to the demo's
# SMTP catcher (each one becomes a file in emails/), retrain webhooks to its receiver (webhooks.jsonl), signed
# with the secret in webhook-secret. Both catchers stop with the demo.
channels:
  ml-owners:
    type: email
    to: [ml-owners@example.com]
    sender: driftline-demo@example.com
    smtp_host: 127.0.0.1
    smtp_port: {smtp_port}
    security: none
    backoff: 200ms
  retrain:
    type: webhook
    url: {webhook_url}
    secret_file: {layout.webhook_secret}
    backoff: 200ms
    cooldown: 1h                  # one retrain trigger per model per hour
rules:
{rules(CLASSIFIER, "accuracy", 0.1)}{rules(REGRESSOR, "mae", 0.3)}{rules(BROKEN, "accuracy", 0.1)}""")
