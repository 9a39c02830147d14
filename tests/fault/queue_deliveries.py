"""Queue numbered test deliveries in a chDB folder, in a process of its own (the folder is one process's at a time).

Run as `python -m tests.fault.queue_deliveries FOLDER HOOKS MAILS`; prints the queued ids as JSON
(`{"webhook": [...], "email": [...]}`). Webhook bodies are `{"n": N}`, emails carry Message-ID
`<fault-N@driftline>`, so a receiver can tell one notification from another by content as well as by id.
"""

from __future__ import annotations

import datetime as dt
import email.message
import json
import sys

from alerts import outbox
from driftline.config import Settings
from driftline.store import connect, migrate

UTC = dt.timezone.utc


def queue(folder: str, hooks: int, mails: int) -> dict[str, list[str]]:
    client = connect(Settings(clickhouse_url=f"chdb:{folder}"))
    migrate(client)
    now = dt.datetime.now(UTC)
    items, ids = [], {"webhook": [], "email": []}
    for n in range(hooks + mails):
        kind, channel = ("webhook", "hook") if n < hooks else ("email", "mail")
        did = outbox.delivery_id("fault", kind, str(n), now.isoformat())
        if kind == "webhook":
            body = json.dumps({"schema": "driftline.fault.v1", "n": n}).encode()
        else:
            message = email.message.EmailMessage()
            message["From"], message["To"], message["Subject"] = "driftline@localhost", "owner@example.com", f"n={n}"
            message["Message-ID"] = f"<fault-{n}@driftline>"
            message.set_content(f"notification {n}")
            body = bytes(message)
        items.append((outbox.Delivery(did, channel, kind, "m", "firing", [], f"n={n}", "pending", 0, now, "", now), body))
        ids[kind].append(did)
    queued = outbox.enqueue(client, items)
    assert len(queued) == len(items)
    return ids


if __name__ == "__main__":
    print(json.dumps(queue(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
