#!/usr/bin/env python3
"""Where played episodes fail: before their last step, or at it.

Compares the episodes an `evaluate` node played with the perfect expert's episodes of the same
instances (the `traces` input it was given, e.g. the paper pipeline's `test` node): for each
template, how many episodes repeated the expert's actions up to its final one (the path), and
how many then also gave its final action (on the knowledge-base and dashboard templates, the
message with the value read off the page). The expert's is one right path among several (it
searches with Enter or with the button), so "reached" undercounts a little; "last action
right" is the expert's own final action, word for word, and the validator accepts some other
wordings (a `find_max` answer naming the right label with another number), so "solved" can be
larger. Standard library only.

    python3 tools/final_step.py STORE EVAL_NODE_ID TEST_NODE_ID [CHECKPOINT] [--show N]

STORE is a run's store (`--store`, or pipelines/.agentmerge), the node ids as in its latest run
(`ev_agent[lr=0.001]`, `test`), CHECKPOINT the played model's name suffix (`step-300`; default:
the last one played). `--show N` prints N wrong final answers per template beside the expert's.
"""
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def episodes(path):
    """The episodes of a `.jsonl.zst` (through the `zstd` command) or `.jsonl` file."""
    if path.suffix == ".zst":
        text = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True, text=True).stdout
    else:
        text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def node_file(store, run, node_id, port):
    """The dataset file of `node_id`'s output `port` in the run."""
    nodes = {n["id"]: n for n in run["nodes"]}
    if node_id not in nodes:
        sys.exit(f"{node_id}: no such node in the latest run of {store} (nodes: {', '.join(sorted(nodes))})")
    out = nodes[node_id]["outputs"][port]
    return Path(out if isinstance(out, str) else out["path"])


def actions(e):
    return [s["action"] for s in e["steps"] if s.get("action")]


def main(argv):
    show = 0
    if "--show" in argv:
        k = argv.index("--show")
        show = int(argv[k + 1])
        argv = argv[:k] + argv[k + 2 :]
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    store, eval_id, test_id = Path(argv[0]), argv[1], argv[2]
    run = json.loads((store / "runs" / "latest.json").read_text())
    played = episodes(node_file(store, run, eval_id, "traces"))
    expert = {(e["task_name"], e["seed"]): e for e in episodes(node_file(store, run, test_id, "traces"))}
    names = sorted({e["agent"]["model_name"] for e in played})
    want = argv[3] if len(argv) == 4 else max(names, key=lambda n: int(n.rsplit("step-", 1)[1]) if "step-" in n else -1)
    chosen = [e for e in played if e["agent"]["model_name"].endswith(want)]
    if not chosen:
        sys.exit(f"no episodes of a model named …{want}; played: {', '.join(names)}")
    print(f"{eval_id}, {chosen[0]['agent']['model_name']}: {len(chosen)} episodes against the expert's of {test_id}")
    print("task | episodes | solved | reached the expert's last step | last action right")
    rows = defaultdict(lambda: [0, 0, 0, 0, []])
    for e in chosen:
        x = expert.get((e["task_name"], e["seed"]))
        if x is None:
            sys.exit(f"{e['task_name']} seed {e['seed']}: not among {test_id}'s episodes")
        want_a, got_a = actions(x), actions(e)
        k = 0
        while k < min(len(want_a), len(got_a)) and want_a[k] == got_a[k]:
            k += 1
        r = rows[e["task_name"]]
        r[0] += 1
        r[1] += bool(e.get("success"))
        if want_a and k >= len(want_a) - 1 and len(got_a) >= len(want_a):
            r[2] += 1
            right = got_a[len(want_a) - 1] == want_a[-1]
            r[3] += right
            if not right:
                r[4].append((want_a[-1], got_a[len(want_a) - 1]))
    for task, (n, solved, reached, right, wrong) in sorted(rows.items()):
        print(f"{task} | {n} | {solved} | {reached} | {right}")
        for w, g in wrong[:show]:
            print(f"    expert: {w}\n    model:  {g}")


if __name__ == "__main__":
    main(sys.argv[1:])
