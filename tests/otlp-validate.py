#!/usr/bin/python3
"""Checks OTLP/JSON traces against the published OTLP definitions.

usage: otlp-validate.py [--external-parent SPANID] [FILE]

Reads one ExportTraceServiceRequest in OTLP/JSON (FILE or stdin), compiles
tests/data/otlp/*.proto with protoc, and parses the request strictly with
google.protobuf.json_format (unknown fields are errors).  OTLP/JSON differs
from protobuf's JSON mapping in one place: trace and span ids are hex, not
base64 (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding);
they are checked as hex and converted before parsing.  Then: ids of 16 and
8 bytes, not all zeros, one trace id, unique span ids, every parent a span
of the request (or SPANID, the caller's span from a traceparent), start <=
end.  Prints "ok: N spans" or the first problem (exit 1).
"""
import base64
import binascii
import json
import os
import re
import subprocess
import sys
import tempfile

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "otlp")
PROTOS = [
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
]


def fail(msg):
    print("otlp-validate: " + msg, file=sys.stderr)
    sys.exit(1)


def hex_to_b64(value, nbytes, where):
    if not isinstance(value, str) or not re.fullmatch("[0-9a-f]{%d}" % (2 * nbytes), value):
        fail("%s: %r is not %d lowercase hex digits" % (where, value, 2 * nbytes))
    raw = binascii.unhexlify(value)
    if raw == bytes(nbytes):
        fail("%s: all zeros" % where)
    return base64.b64encode(raw).decode()


def main(argv):
    external = set()
    args = argv[1:]
    while args and args[0] == "--external-parent":
        external.add(args[1])
        args = args[2:]
    text = open(args[0]).read() if args else sys.stdin.read()
    if text.count("\n") != 1 or not text.endswith("\n"):
        fail("not one line of JSON")
    doc = json.loads(text)
    spans = [s for rs in doc.get("resourceSpans", []) for ss in rs.get("scopeSpans", [])
             for s in ss.get("spans", [])]
    if not spans:
        fail("no spans")
    ids = set()
    traces = set()
    for i, s in enumerate(spans):
        where = "span %d (%s)" % (i, s.get("name"))
        traces.add(s.get("traceId"))
        if s.get("spanId") in ids:
            fail("%s: span id %s twice" % (where, s.get("spanId")))
        ids.add(s.get("spanId"))
        s["traceId"] = hex_to_b64(s.get("traceId"), 16, where + " traceId")
        s["spanId"] = hex_to_b64(s.get("spanId"), 8, where + " spanId")
        if "parentSpanId" in s:
            s["_parent"] = s["parentSpanId"]
            s["parentSpanId"] = hex_to_b64(s["parentSpanId"], 8, where + " parentSpanId")
        for key in ("startTimeUnixNano", "endTimeUnixNano"):
            if not isinstance(s.get(key), str) or not s[key].isdigit():
                fail("%s: %s must be a decimal string" % (where, key))
        if int(s["startTimeUnixNano"]) > int(s["endTimeUnixNano"]):
            fail("%s: ends before it starts" % where)
        if not isinstance(s.get("kind"), int):
            fail("%s: kind must be an integer" % where)
    if len(traces) != 1:
        fail("%d trace ids, not one" % len(traces))
    for i, s in enumerate(spans):
        parent = s.pop("_parent", None)
        if parent is not None and parent not in ids and parent not in external:
            fail("span %d (%s): parent %s is not in the trace" % (i, s.get("name"), parent))

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["protoc", "-I" + PROTO_DIR, "--python_out=" + out] + PROTOS, check=True)
        sys.path.insert(0, out)
        from google.protobuf import json_format
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        req = trace_service_pb2.ExportTraceServiceRequest()
        try:
            json_format.Parse(json.dumps(doc), req, ignore_unknown_fields=False)
        except json_format.ParseError as e:
            fail("does not parse as ExportTraceServiceRequest: %s" % e)
    n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                if len(s.trace_id) != 16 or len(s.span_id) != 8:
                    fail("span %s: ids of the wrong length" % s.name)
    print("ok: %d spans" % n)


if __name__ == "__main__":
    main(sys.argv)
