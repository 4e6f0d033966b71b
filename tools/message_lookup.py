#!/usr/bin/env python3
"""Message lookup: when a model answers a lookup question, does it name the goal's key, and
does it give the value the page shows for the key it names?

For the two seen lookup templates whose answer names a key (`read_value`: `The value of
Network is 33.`, the chart row the goal asks for; `support_contact`: `The Benefits team in Dublin
can be reached on ext. 2216.`, the office the goal asks for), every `send_msg_to_user` a model
played is sorted by two questions:

- *key*: is the key it names the goal's (`key=goal`), another key the page shows (`key on
  page`), or none of them (`key not on page`)?
- *value*: is its value the one the page shows beside the key it names (`value=page[key]`)?

A model that copies the wrong key but reads the page gives `key on page, value=page[key]`; one
that does not read the page gives a value from nowhere. The expert's own messages (pass the test
node's id, e.g. `test`) are all `key=goal, value=page[key]`: the check of the parser.

    python3 tools/message_lookup.py STORE [NODE_ID ...]

STORE is a run's store (`--store`, or pipelines/.agentmerge); the played episodes are those of
the named nodes of its latest run, or of every `*/evaluate` node when none is named. Standard
library and the `zstd` command only.
"""
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from final_step import episodes, node_file  # noqa: E402

# The message, and where the goal names the key, per template.
MESSAGE = {
    "read_value": re.compile(r"The value of (.+) is (.+)\.$"),
    "support_contact": re.compile(r"team in (.+) can be reached on ext\. (\d+)"),
}
GOAL_KEY = {
    "read_value": re.compile(r'value of "(.+?)"'),
    "support_contact": re.compile(r"(?:in the|in|at the) ([A-Z][\w ]+?)(?: office|\?)"),
}


def pairs(axtree):
    """(key, value) pairs the page shows: table rows (first cell, each other cell; `ext. ` cut),
    `label: value (share)` list items, and contact sentences `in <office> can be reached on ext. <n>`."""
    out = set()
    lines = axtree.split("\n")
    for i, line in enumerate(lines):
        if re.search(r"\] row ''", line):
            cells = []
            for nxt in lines[i + 1 :]:
                m = re.search(r"\] (?:cell|gridcell) '(.*)'", nxt)
                if not m:
                    break
                cells.append(m.group(1))
            out.update((cells[0], c.replace("ext. ", "")) for c in cells[1:])
        m = re.search(r"listitem '(.+?): (.+)'", line)
        if m:
            out.add((m.group(1), m.group(2).split(" (")[0]))
        out.update(re.findall(r"in (.+?) can be reached on ext\. (\d+)", line))
    return out


def main(argv):
    if not argv:
        sys.exit(__doc__)
    store, wanted = Path(argv[0]), set(argv[1:])
    run = json.loads((store / "runs" / "latest.json").read_text())
    counts = Counter()
    for node in run["nodes"]:
        if (node["id"] not in wanted) if wanted else not node["uses"].endswith("/evaluate"):
            continue
        if "traces" not in node["outputs"]:
            continue
        for e in episodes(node_file(store, run, node["id"], "traces")):
            task = e["task_name"].rsplit(".", 1)[-1]
            if task not in MESSAGE:
                continue
            goal_key = GOAL_KEY[task].search(e["goal"])
            goal_key = goal_key.group(1) if goal_key else None
            for s in e["steps"]:
                action = s.get("action") or ""
                if not action.startswith("send_msg_to_user("):
                    continue
                m = MESSAGE[task].search(action[len("send_msg_to_user(") + 1 : -2])
                if not m:
                    counts[(task, "another wording", "")] += 1
                    continue
                key, value = m.group(1), m.group(2)
                shown = pairs(s["obs"]["axtree_txt"])
                where = "key=goal" if key == goal_key else "key on page" if key in {k for k, _ in shown} else "key not on page"
                counts[(task, where, "value=page[key]" if (key, value) in shown else "value wrong")] += 1
    print("template | key | value | messages")
    for (task, where, value), n in sorted(counts.items()):
        print(f"{task} | {where} | {value} | {n}")


if __name__ == "__main__":
    main(sys.argv[1:])
