"""How many requests drift takes to show: `cargo xtask bench drift`.

Against a running preflight-serve (URL) on the fixtures (MODELS), per model:
fill the monitoring window with training-like rows (the bundle's samples,
one row per request), then send rows with one input scaled by a factor, one
row per request, reading the monitor every 10 requests, until that input's
PSI crosses the alert threshold. Prints, per model and factor, the requests
it took, the PSI then, and the highest PSI any other input reached meanwhile;
and, with no drift at all, the highest PSI of any input over two windows.
Standard library only.
"""

import json
import sys
import tomllib
import urllib.request
from pathlib import Path

THRESHOLD = 0.2
INPUT = "distance_km"
FACTORS = (1.25, 1.5, 2.0, 3.0)
MODELS = ("eta-madrid/2", "eta-lisbon/2")
STEP = 10


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def main(url, models):
    print(f"| model | {INPUT} × | requests to PSI > {THRESHOLD} | PSI then | highest PSI of another input |")
    print("| --- | --- | --- | --- | --- |")
    quiet = []
    for bundle in MODELS:
        name, version = bundle.split("/")
        folder = Path(models) / bundle
        manifest = tomllib.loads((folder / "manifest.toml").read_text())
        inputs = manifest["inputs"]
        rows = [json.loads(l)["inputs"] for l in (folder / "samples.jsonl").read_text().splitlines() if l]
        infer = f"{url}/v2/models/{name}/versions/{version}/infer"
        monitor = f"{url}/v2/models/{name}/versions/{version}/monitor"
        window = call(monitor)["window"]

        def send(row):
            body = {"inputs": [
                {"name": i["name"], "datatype": i["datatype"], "shape": [1, 1], "data": [row[i["name"]]]}
                for i in inputs
            ]}
            call(infer, body)

        def settled(sent):
            # The monitor runs beside the requests: wait until it has them.
            while True:
                report = call(monitor)
                if report["rows_seen"] >= sent:
                    return report

        sent = call(monitor)["rows_seen"]

        def warm():
            nonlocal sent
            highest = 0.0
            for i in range(window):
                send(rows[i % len(rows)])
                sent += 1
                if (i + 1) % (window // 4) == 0:
                    report = settled(sent)
                    highest = max([highest] + [d["psi"] or 0.0 for d in report["inputs"].values()])
            return highest

        warm()
        quiet.append((bundle, warm()))
        for factor in FACTORS:
            warm()
            others, crossed = 0.0, None
            for n in range(1, window + 1):
                row = dict(rows[n % len(rows)])
                if row[INPUT] is not None:
                    row[INPUT] = row[INPUT] * factor
                send(row)
                sent += 1
                if n % STEP == 0:
                    report = settled(sent)
                    psi = {k: d["psi"] or 0.0 for k, d in report["inputs"].items()}
                    others = max(others, max(v for k, v in psi.items() if k != INPUT))
                    if psi[INPUT] > THRESHOLD:
                        crossed = (n, psi[INPUT])
                        break
            if crossed:
                print(f"| {bundle} | {factor} | {crossed[0]} | {crossed[1]:.3f} | {others:.3f} |")
            else:
                print(f"| {bundle} | {factor} | not within {window} | | {others:.3f} |")
    print()
    print(f"No drift: training-like rows only, the highest PSI of any input over a window of {window} rows:")
    for bundle, highest in quiet:
        print(f"- {bundle}: {highest:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
