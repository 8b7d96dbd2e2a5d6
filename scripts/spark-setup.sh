#!/usr/bin/env bash
# Installs PySpark (local mode), delta-spark and deltalake (delta-rs) into the
# repo's .venv on top of the SDK (scripts/python-setup.sh), and fetches
# delta-spark's jars from Maven Central into .venv/ivy2 (Ivy's cache), so
# tests start Spark without the network. Needs Java 17 (`java` on PATH).
# Idempotent: a second run only compares the stamp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/python-setup.sh"
venv="$root/.venv"
stamp="$venv/.spark-requirements"
want="$(cat "$root/python/requirements-spark.txt")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi
if ! command -v java >/dev/null; then
	echo "spark-setup: Java 17 is needed for PySpark: apt-get install openjdk-17-jre-headless" >&2
	exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/python/requirements-spark.txt"
# A local session with Delta resolves and caches the jars once.
TALLY_IVY="$venv/ivy2" "$venv/bin/python" - <<'PY'
import os
from pyspark.sql import SparkSession
from delta import configure_spark_with_delta_pip
b = (SparkSession.builder.master("local[1]").appName("tally-spark-setup")
     .config("spark.jars.ivy", os.environ["TALLY_IVY"])
     .config("spark.ui.enabled", "false")
     .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
     .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"))
s = configure_spark_with_delta_pip(b).getOrCreate()
assert s.range(3).count() == 3
s.stop()
PY
printf '%s' "$want" > "$stamp"
