"""Check a run's platform hooks as the platform's own tools read them.

Usage: hooks_check.py METRICS_FILE LINEAGE_FILE MANIFEST_JSON (MANIFEST_JSON: '-' for a failed run)

- The metrics file parses with prometheus_client's text parser; on a successful run its table
  rows and list sizes equal the manifest's, and it has a value per network KPI.
- Each lineage line is an OpenLineage RunEvent as the official client (openlineage-python, whose
  classes are generated from the OpenLineage JSON schema and validate event time, run UUID, URIs
  and the event type) builds it: every event is rebuilt from its JSON with those classes and
  must serialise back to the same JSON (so no field is unknown, misplaced or of the wrong type),
  and each facet's `_schemaURL` names the facet class's schema. START comes first, then COMPLETE
  (with row counts equal to the manifest's) or FAIL (with an error message); one run id.
Prints one summary line; exits 1 with the reason otherwise.
"""

import json
import re
import sys

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.data_quality_metrics_input_dataset import DataQualityMetricsInputDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.job_type_job import JobTypeJobFacet
from openlineage.client.generated.nominal_time_run import NominalTimeRunFacet
from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from openlineage.client.serde import Serde
from prometheus_client.parser import text_string_to_metric_families

FACETS = {
    "nominalTime": NominalTimeRunFacet,
    "errorMessage": ErrorMessageRunFacet,
    "jobType": JobTypeJobFacet,
    "schema": SchemaDatasetFacet,
    "dataQualityMetrics": DataQualityMetricsInputDatasetFacet,
    "outputStatistics": OutputStatisticsOutputDatasetFacet,
}


def fail(msg):
    print(msg)
    sys.exit(1)


def facet(name, body):
    cls = FACETS.get(name)
    if cls is None:
        fail(f"unknown facet {name}")
    ours = re.sub(r"/\d+-\d+-\d+/", "/", body.get("_schemaURL", ""))
    theirs = re.sub(r"/\d+-\d+-\d+/", "/", cls._get_schema())
    if ours != theirs:
        fail(f"facet {name}: _schemaURL {body.get('_schemaURL')} is not {cls._get_schema()}")
    args = {k: v for k, v in body.items() if not k.startswith("_")}
    if name == "schema":
        args["fields"] = [SchemaDatasetFacetFields(**f) for f in args["fields"]]
    return cls(**args)


def facets(d):
    return {k: facet(k, v) for k, v in (d or {}).items()}


def rebuild(e):
    return RunEvent(
        eventType=RunState(e["eventType"]),
        eventTime=e["eventTime"],
        run=Run(runId=e["run"]["runId"], facets=facets(e["run"].get("facets"))),
        job=Job(namespace=e["job"]["namespace"], name=e["job"]["name"], facets=facets(e["job"].get("facets"))),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d.get("facets")),
                             inputFacets=facets(d.get("inputFacets"))) for d in e["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d.get("facets")),
                               outputFacets=facets(d.get("outputFacets"))) for d in e["outputs"]],
        producer=e["producer"],
    )


def strip(o):
    """Without the keys the client fills in itself (producer, schema URLs) or leaves out when empty."""
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if k not in ("_producer", "_schemaURL", "producer", "schemaURL") and v not in ({}, [], None)}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


def main():
    metrics_path, lineage_path, manifest_path = sys.argv[1:4]
    manifest = None if manifest_path == "-" else json.load(open(manifest_path))

    samples = {}
    for fam in text_string_to_metric_families(open(metrics_path).read()):
        for s in fam.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    success = samples["flywheel_run_success"][0][1]
    if success != (1.0 if manifest else 0.0):
        fail(f"flywheel_run_success is {success}")
    if manifest:
        rows = {l["table"]: v for l, v in samples["flywheel_table_rows"]}
        for t in manifest["tables"]:
            if rows.get(t["table"]) != t["rows"]:
                fail(f"flywheel_table_rows of {t['table']}: {rows.get(t['table'])}, manifest {t['rows']}")
        lists = {l["list"]: v for l, v in samples["flywheel_list_size"]}
        for t in manifest["tables"]:
            name = t["table"].split("/")[-1]
            if name in lists and lists[name] != t["rows"]:
                fail(f"flywheel_list_size of {name}: {lists[name]}, manifest {t['rows']}")
        kpis = {(l["table"], l["kpi"]) for l, _ in samples["flywheel_kpi_value"]}
        if ("referral_kpis", "referral_rate") not in kpis or len(kpis) < 8:
            fail(f"KPI values missing: {sorted(kpis)}")
        if len(samples["flywheel_stage_duration_seconds"]) < 5:
            fail("stage durations missing")

    events = [json.loads(line) for line in open(lineage_path) if line.strip()]
    kinds = [e["eventType"] for e in events]
    if kinds != ["START", "COMPLETE" if manifest else "FAIL"]:
        fail(f"events {kinds}")
    if len({e["run"]["runId"] for e in events}) != 1:
        fail("the events have different run ids")
    for e in events:
        back = json.loads(Serde.to_json(rebuild(e)))
        if strip(back) != strip(e):
            fail(f"{e['eventType']} does not survive the client's model:\nours   {json.dumps(strip(e))[:2000]}\ntheirs {json.dumps(strip(back))[:2000]}")
    end = events[1]
    if manifest:
        for t in manifest["tables"]:
            folder = t["path"].rsplit("/dt=", 1)[0]
            d = next((d for d in end["outputs"] if d["name"].endswith("/" + folder)), None)
            if d is None or d["outputFacets"]["outputStatistics"]["rowCount"] != t["rows"]:
                fail(f"outputStatistics of {t['table']} missing or not {t['rows']}")
        for c in manifest["contract_checks"]:
            d = next(d for d in end["inputs"] if d["name"].endswith("/" + c["input"]))
            if d["inputFacets"]["dataQualityMetrics"]["rowCount"] != c["rows"]:
                fail(f"input {c['input']} rowCount")
    elif not end["run"]["facets"]["errorMessage"]["message"]:
        fail("FAIL event without an error message")
    print(f"hooks ok: {sum(len(v) for v in samples.values())} samples, {len(events)} lineage events "
          f"({len(end['inputs'])} inputs, {len(end['outputs'])} outputs)")


if __name__ == "__main__":
    main()
