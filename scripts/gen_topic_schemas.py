"""Regenerate the value_schema of every topics/*.json from
apex_stream.events."""

import json

from apex_stream.resources import TOPICS
from apex_stream.topics import event_schema, load_specs

for spec in load_specs(TOPICS).values():
    path = TOPICS / f"{spec.name}.json"
    raw = json.loads(path.read_text())
    raw["value_schema"] = event_schema(spec.event_type)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"wrote {path}")
