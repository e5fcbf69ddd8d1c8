"""What the store records of a definition set: each version's content hash and full definition."""

from __future__ import annotations

from kr_metrics.definitions import DefinitionSet, definition_version


def definition_records(definitions: DefinitionSet) -> dict[str, list[dict]]:
    """Rows for `OkrStore.record_definitions`: cycles and objectives with their versions, and the
    full definition (filters included) of every KR and KPI version, keyed by the same content
    hash kr_metrics.engine stamps on each value row."""
    cycles = [
        {
            "key": c.key,
            "definition_version": definition_version(c),
            "start": c.start,
            "end": c.end,
            "timezone": getattr(c, "timezone", None),
        }
        for c in definitions.cycles.values()
    ]
    objectives, key_results = [], []
    for loaded in definitions.objectives:
        objective = loaded.objective
        without_krs = objective.model_copy(update={"key_results": []})
        objectives.append(
            {
                "cycle": loaded.cycle.key,
                "key": objective.key,
                "definition_version": definition_version(loaded.cycle, without_krs),
                "title": objective.title,
                "level": str(objective.level),
                "team": getattr(objective, "team", None),
                "ambition": str(objective.ambition),
                "aligns_to": getattr(objective, "aligns_to", None),
                "definition": without_krs.model_dump(mode="json", exclude={"key_results"}),
            }
        )
        for kr in objective.key_results:
            version = definition_version(
                loaded.cycle, objective.model_copy(update={"key_results": [kr]})
            )
            key_results.append(
                {
                    "cycle": loaded.cycle.key,
                    "kr": kr.key,
                    "definition_version": version,
                    "definition": kr.model_dump(mode="json"),
                }
            )
    kpis = [
        {
            "kpi": kpi.key,
            "definition_version": definition_version(kpi),
            "definition": kpi.model_dump(mode="json"),
        }
        for kpi in definitions.kpis
    ]
    return {"cycles": cycles, "objectives": objectives, "key_results": key_results, "kpis": kpis}
