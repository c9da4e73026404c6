"""Switch times of pins under load: `cargo xtask bench rollout`.

Against a release preflight-serve (URL) serving the fixtures with the
repository API open, while `load` sends traffic to eta-madrid's default
route: every 2 s pins a version of eta-madrid (1, 2, 1, 2, 1), and times
each switch from the call to the first answer of the new version, seen by
a prober that sends single-row requests to the default route back to back.
Standard library only.
"""

import json
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

MODEL = "eta-madrid"


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.load(answer) if answer.length != 0 else None


def main(url):
    folder = Path(__file__).resolve().parents[2] / "fixtures/models" / MODEL / "2"
    inputs = tomllib.loads((folder / "manifest.toml").read_text())["inputs"]
    row = json.loads((folder / "samples.jsonl").read_text().splitlines()[0])["inputs"]
    body = {"inputs": [{"name": i["name"], "datatype": i["datatype"], "shape": [1, 1], "data": [row[i["name"]]]} for i in inputs]}
    answers = []  # (time sent, version)
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                _, answer = post(f"{url}/v2/models/{MODEL}/infer", body)
                answers.append((sent, answer["model_version"]))
            except Exception as error:  # counted by the load generators too
                answers.append((sent, f"failed: {error}"))

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(2)
    print("| pin | call answered after | first answer of the pinned version after |")
    print("| --- | --- | --- |")
    for version in ("1", "2", "1", "2", "1"):
        called = time.perf_counter()
        status, _ = post(f"{url}/v2/repository/models/{MODEL}/load", {"parameters": {"version": version}})
        returned = time.perf_counter() - called
        first = None
        while first is None and time.perf_counter() - called < 10:
            first = next((t for t, v in list(answers) if t >= called and v == version), None)
            time.sleep(0.001)
        switch = f"{(first - called) * 1000:.1f} ms" if first else "not within 10 s"
        print(f"| version {version} ({status}) | {returned * 1000:.1f} ms | {switch} |")
        time.sleep(2)
    stop.set()
    prober.join()
    failed = [v for _, v in answers if v.startswith("failed")]
    print(f"\nprober: {len(answers)} requests, {len(failed)} failed")


if __name__ == "__main__":
    main(sys.argv[1])
