"""Feast peer for `tally bench`: registers the fraud_detection features in a
Feast repo with the Redis online store, writes the precomputed values the
harness computed (CSV files) into it, then runs `feast serve`.

Usage: serve.py DIR REDIS_PORT HTTP_PORT
DIR holds users.csv, merchants.csv, countries.csv (entity key first, then
one column per feature). The process serves until it is killed.
"""
import os
import sys
from datetime import datetime, timedelta, timezone

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64

d, redis_port, http_port = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(os.path.join(d, "data"), exist_ok=True)
with open(os.path.join(d, "feature_store.yaml"), "w") as f:
    f.write(f"""project: tally_bench
registry: {d}/data/registry.db
provider: local
online_store:
  type: redis
  connection_string: "127.0.0.1:{redis_port}"
offline_store:
  type: file
entity_key_serialization_version: 3
""")

now = datetime.now(timezone.utc)
objs = []
frames = {}
for entity, key, csv in [("user", "user_id", "users.csv"), ("merchant", "merchant", "merchants.csv"), ("country", "country", "countries.csv")]:
    df = pd.read_csv(os.path.join(d, csv), dtype={key: str})
    df["event_timestamp"] = now
    path = os.path.join(d, "data", csv.replace(".csv", ".parquet"))
    df.to_parquet(path)
    ent = Entity(name=entity, join_keys=[key])
    src = FileSource(path=path, timestamp_field="event_timestamp")
    objs.append(ent)
    # Columns are "<view>__<feature>": one FeatureView per tally view.
    views = {}
    for col in df.columns:
        if "__" not in col:
            continue
        view, feat = col.split("__", 1)
        typ = Int64 if "count" in feat else Float64
        views.setdefault(view, []).append(Field(name=feat, dtype=typ))
    for view, fields in views.items():
        objs.append(FeatureView(name=view, entities=[ent], schema=fields, source=src, ttl=timedelta(days=3), online=True))
        sub = df[[key, "event_timestamp"] + [f"{view}__{f.name}" for f in fields]]
        frames[view] = sub.rename(columns={f"{view}__{f.name}": f.name for f in fields})

store = FeatureStore(repo_path=d)
store.apply(objs)
for view, df in frames.items():
    store.write_to_online_store(view, df)
print("feast-bench: loaded", {v: len(df) for v, df in frames.items()}, flush=True)
os.execvp(os.path.join(os.path.dirname(sys.executable), "feast"),
          ["feast", "-c", d, "serve", "-h", "127.0.0.1", "-p", http_port, "--no-access-log", "-w", "2", "--max-requests", "0"])
