"""`driftline demo`: the whole promise on one machine, in about two minutes, with nothing to set up.

One process (the embedded chDB folder belongs to one process) runs a local
broker, the collector, the detector scheduler with 10-second windows, alert
evaluation and the outbox dispatcher, the HTTP API, an SMTP catcher and a
webhook receiver, while a simulator sends the traffic of three models:

- `churn-classifier` drifts, and once its late labels arrive its accuracy
  drops: drift and accuracy alerts, emails and one signed retrain webhook;
- `delivery-eta` (a regressor) stays healthy: nothing fires;
- `fraud-scorer` gets a broken feature pipeline that sends missing values:
  a data-quality alert by email (a broken pipeline is no reason to retrain).

Modules, one job each: `config` writes the folder's configuration, `traffic`
simulates the models, `catchers` receive what Driftline sends, `run` wires it
together, shows the progress and writes the summary.
"""
