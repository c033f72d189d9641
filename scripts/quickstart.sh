#!/usr/bin/env bash
# From a fresh clone on Debian/Ubuntu with Python 3.11+: install everything into .venv (RabbitMQ too), bring the
# local stack up and run the two-tier FedAvg example (4 trainers on scikit-learn digits) to completion
# through flamectl, showing its progress and final state. The stack stays up: `flame down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=${1:-examples/two_tier_fedavg}

bash scripts/install.sh
# shellcheck disable=SC1091
source "${FLAME_VENV:-.venv}/bin/activate"   # flame, flamectl and python3 from the project's venv
bash scripts/services.sh
flame up

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
design="$(basename "$EXAMPLE" | tr '_' '-')-$(date +%s)"
echo "==> registering design '$design' from $EXAMPLE"
flamectl create design "$design" -d "quickstart: $EXAMPLE"
flamectl create schema "$design" "$EXAMPLE/schema.json"
roles=$(python3 -c 'import json,sys; print(" ".join(r["name"] for r in json.load(open(sys.argv[1]))["roles"]))' "$EXAMPLE/schema.json")
(cd "$EXAMPLE" && python3 -m zipfile -c "$work/code.zip" $roles)
flamectl create code "$design" "$work/code.zip"

echo "==> registering datasets"
python3 - "$EXAMPLE" "$work" <<'PY'
import json, pathlib, subprocess, sys
example, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
spec = json.loads((example / "dataSpec.json").read_text())
for entry in spec:
    for group, names in entry["datasetGroups"].items():
        ids = []
        for name in names:
            path = example / f"{name}.json"
            made = subprocess.run(
                ["flamectl", "--output", "json", "create", "dataset", str(path)],
                capture_output=True, text=True,
            )
            if made.returncode == 0:
                ids.append(json.loads(made.stdout)["id"])
            elif made.returncode == 7:  # conflict: registered by an earlier run, reuse it
                url = json.loads(path.read_text())["url"]
                mine = subprocess.run(
                    ["flamectl", "--output", "json", "get", "datasets"],
                    check=True, capture_output=True, text=True,
                ).stdout
                ids.append(next(d["id"] for d in json.loads(mine) if d["url"] == url))
            else:
                sys.exit(made.stderr.strip() or f"flamectl create dataset {path} failed")
            print(f"  {name} -> {ids[-1]}")
        entry["datasetGroups"][group] = ids
(work / "dataSpec.json").write_text(json.dumps(spec))
job = json.loads((example / "job.json").read_text())
job["dataSpecPath"] = "dataSpec.json"
job["modelSpecPath"] = str((example / "modelSpec.json").resolve())
(work / "job.json").write_text(json.dumps(job))
PY
python3 - "$work/job.json" "$design" <<'PY'
import json, sys
job = json.load(open(sys.argv[1])); job["designId"] = sys.argv[2]
json.dump(job, open(sys.argv[1], "w"))
PY

job_id=$(flamectl --output json create job "$work/job.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "==> job $job_id created; starting it"
flamectl start job "$job_id"
status=0
flamectl job watch "$job_id" || status=$?
flamectl get tasks "$job_id"
flamectl get job "$job_id" --status
echo "==> the evaluation of the global model, round by round (flamectl get metrics $job_id):"
flamectl --output json get metrics "$job_id" > "$work/metrics.json"
python3 - "$work/metrics.json" <<'PY'
import json, sys
# The roles that evaluate (the top aggregator; every trainer in ring all-reduce) record test_*.
for row in json.load(open(sys.argv[1])):
    m = row["metrics"]
    if "test_accuracy" in m:
        print("  %-14s round %3d  loss %.4f  accuracy %.4f"
              % (row["role"], row["round"], m.get("test_loss", float("nan")), m["test_accuracy"]))
PY
echo "==> logs: ~/.flame/logs/   stop the stack: flame down"
echo "==> to use flame and flamectl in your shell: source ${FLAME_VENV:-.venv}/bin/activate"
exit "$status"
