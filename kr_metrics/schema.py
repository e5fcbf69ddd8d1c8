"""The JSON Schema of definition files, generated from the pydantic models for editors."""

from __future__ import annotations

import json

from kr_metrics.definitions import DefinitionsFile

SCHEMA_FILE = "krpulse-definitions.schema.json"
# Editors (VS Code with the YAML extension, JetBrains) read this modeline to autocomplete.
MODELINE = f"# yaml-language-server: $schema={SCHEMA_FILE}"


def schema_json() -> str:
    schema = DefinitionsFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "krpulse definitions file"
    schema["description"] = (
        "KR cycles with objectives and key results, standing KPIs, and custom metrics. "
        "See docs/metrics.md and the README's section for sales ops."
    )
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
