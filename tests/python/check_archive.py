"""Reads an Otterline Parquet archive with pyarrow and DuckDB (never with Otterline's code).

  check_archive.py schema --doc docs/parquet-schema.md --archive DIR
      Every file opens with pyarrow and its schema (names, order, types, nullability,
      metadata) matches the tables of the schema document. Prints {"files": N}.
  check_archive.py duckdb --archive DIR
      Answers the questions the tests ask, as JSON.
  check_archive.py count --archive DIR
      Rows per signal read by DuckDB over every *.parquet file (fails on any unreadable file).
  check_archive.py span-ids --archive DIR
      {span_id: rows} over every traces file (DuckDB).
  check_archive.py foreign --out FILE
      Writes a Parquet file that is not an Otterline archive file.
"""

import argparse
import glob
import json
import os
import re
import sys


def canonical(t):
    import pyarrow as pa

    if pa.types.is_map(t):
        return f"map<{canonical(t.key_type)}, {canonical(t.item_type)}>"
    if pa.types.is_struct(t):
        parts = []
        for f in t:
            parts.append(f"{f.name}: {canonical(f.type)}" + ("" if f.nullable else " not null"))
        return "struct<" + ", ".join(parts) + ">"
    if pa.types.is_list(t):
        return f"list<{canonical(t.value_type)}>"
    return str(t)


def parse_doc(path):
    text = open(path).read()
    aliases = {}
    tables = {}
    section = None
    for line in text.splitlines():
        h = re.match(r"^## (.*)$", line)
        if h:
            section = h.group(1).strip()
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if not cells or cells[0] in ("alias", "column") or set(cells[0]) <= set("-"):
            continue
        if section == "Shared types":
            aliases[cells[0]] = cells[1].strip("`")
        elif section in ("traces", "metrics", "logs", "Resource and scope columns (every table)"):
            tables.setdefault(section, []).append(cells)
    # Expand the placeholder row into the shared resource/scope columns.
    shared = tables.pop("Resource and scope columns (every table)")
    out = {}
    for sig in ("traces", "metrics", "logs"):
        cols = []
        for c in tables[sig]:
            if c[0].startswith("*resource and scope"):
                cols.extend(shared)
            else:
                cols.append(c)
        out[sig] = [(c[0].strip("`"), c[1], c[2] == "yes") for c in cols]
    return aliases, out


def with_aliases(s, aliases):
    # Replace alias expansions innermost first until nothing changes.
    expanded = {}
    for name, body in aliases.items():
        expanded[name] = body
    changed = True
    while changed:
        changed = False
        for name, body in expanded.items():
            for other, obody in expanded.items():
                if other != name and other in body:
                    expanded[name] = body.replace(other, obody)
                    changed = changed or expanded[name] != body
                    body = expanded[name]
    for name in sorted(expanded, key=lambda n: -len(expanded[n])):
        s = s.replace(expanded[name], name)
    return s


def cmd_schema(args):
    import pyarrow.parquet as pq

    aliases, tables = parse_doc(args.doc)
    n = 0
    for sig, cols in tables.items():
        files = glob.glob(os.path.join(args.archive, sig, "**", "*.parquet"), recursive=True)
        for f in files:
            n += 1
            schema = pq.read_schema(f)
            meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
            if meta.get("otterline.schema.version") != "2" or meta.get("otterline.signal") != sig:
                sys.exit(f"{f}: metadata {meta}")
            got = [(fld.name, with_aliases(canonical(fld.type), aliases), fld.nullable) for fld in schema]
            if got != cols:
                for i, (g, w) in enumerate(zip(got, cols)):
                    if g != w:
                        sys.exit(f"{f}: column {i}: file has {g}, document says {w}")
                sys.exit(f"{f}: {len(got)} columns in the file, {len(cols)} in the document")
            pq.read_table(f)  # every value decodes
    print(json.dumps({"files": n}))


def cmd_duckdb(args):
    import duckdb

    t = f"read_parquet('{args.archive}/traces/**/*.parquet', hive_partitioning = true)"
    con = duckdb.connect()
    q = lambda sql: con.execute(sql).fetchall()
    out = {
        "spans_per_service": {s: n for s, n in q(f"SELECT service_name, count(*) FROM {t} GROUP BY 1")},
        "p95_duration_ms_per_name": {
            name: v for name, v in q(f"SELECT name, quantile_cont(duration_ns / 1e6, 0.95) FROM {t} GROUP BY 1")
        },
        "output_tokens_per_model": {
            m: int(v) for m, v in q(f"SELECT gen_ai_request_model, sum(gen_ai_usage_output_tokens) FROM {t} WHERE gen_ai_request_model IS NOT NULL GROUP BY 1")
        },
        "spans_per_user_7": q(f"SELECT count(*) FROM {t} WHERE attributes['user.id'] = 'user-7'")[0][0],
        "temperature_by_key": (q(f"SELECT DISTINCT CAST(attributes['gen_ai.request.temperature'] AS DOUBLE) FROM {t} WHERE attributes['gen_ai.request.temperature'] IS NOT NULL") or [[None]])[0][0],
        "partitions": sorted({f"{d}/{h}" for d, h in q(f"SELECT DISTINCT CAST(date AS VARCHAR), hour FROM {t}")}),
    }
    print(json.dumps(out, sort_keys=True))


def cmd_count(args):
    import duckdb

    con = duckdb.connect()
    out = {}
    for sig in ("traces", "metrics", "logs"):
        files = glob.glob(os.path.join(args.archive, sig, "**", "*.parquet"), recursive=True)
        out[sig] = con.execute(f"SELECT count(*) FROM read_parquet({files!r})").fetchone()[0] if files else 0
    print(json.dumps(out))


def cmd_metric_sum(args):
    import duckdb

    t = f"read_parquet('{args.archive}/metrics/**/*.parquet')"
    v = duckdb.connect().execute(f"SELECT coalesce(sum(coalesce(value_int, 0) + coalesce(value_double, 0)), 0), count(*) FROM {t} WHERE metric_name = ?", [args.name]).fetchone()
    print(json.dumps({"sum": v[0], "points": v[1]}))


def cmd_span_ids(args):
    import duckdb

    files = glob.glob(os.path.join(args.archive, "traces", "**", "*.parquet"), recursive=True)
    rows = duckdb.connect().execute(f"SELECT span_id, count(*) FROM read_parquet({files!r}) GROUP BY 1").fetchall() if files else []
    print(json.dumps({sid: n for sid, n in rows}))


def cmd_foreign(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2, 3]}), args.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schema")
    s.add_argument("--doc", required=True)
    s.add_argument("--archive", required=True)
    d = sub.add_parser("duckdb")
    d.add_argument("--archive", required=True)
    c = sub.add_parser("count")
    c.add_argument("--archive", required=True)
    m = sub.add_parser("metric-sum")
    m.add_argument("--archive", required=True)
    m.add_argument("--name", required=True)
    i = sub.add_parser("span-ids")
    i.add_argument("--archive", required=True)
    f = sub.add_parser("foreign")
    f.add_argument("--out", required=True)
    args = ap.parse_args()
    {"schema": cmd_schema, "duckdb": cmd_duckdb, "count": cmd_count, "metric-sum": cmd_metric_sum, "span-ids": cmd_span_ids, "foreign": cmd_foreign}[args.cmd](args)


if __name__ == "__main__":
    main()
