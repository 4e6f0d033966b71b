#!/usr/bin/env python3
"""Reading probe: does a pretrained model answer its own kind of reading exercises, on pages it
never saw? Greedy decoding, in the pretraining format, kind by kind.

`sft/reading` writes pretraining documents: a page, then `Q:`/`A:` lines (which element is the
button 'Save', the Count of 'Network' in a chart, ...), and goal documents: numbered
instructions, the page, then the numbered actions. For each answer line of the given documents
(`--per-doc` of them each) the model is given the document up to `A:` (or up to `N.` in a goal
document's actions), with every earlier answer as written, and decodes greedily to the end of
the line; the answer is right when it equals the written one. The table gives, per kind, the
answers right, and for questions answered with a value from the page (`value`, `cell`, and the
goal documents' messages) how often the model's answer is at least *some* value shown on that
page (it read the right kind of thing, from the wrong place).

    python3 tools/reading_probe.py MODEL_DIR TOKENIZER_DIR READING.jsonl [--docs N] [--per-doc K] [--show N] [MODEL_DIR ...]

READING.jsonl is the `text` output of an `sft/reading` node on pages no model trained on (the
paper pipeline's held-out instruction pages, `instruct_split.test`, docs/paper.md shows the
node). `--show N` prints N wrong answers per kind. Needs numpy, safetensors and tokenizers (the forward of `copy_probe.py`, checked against
the Rust model there).
"""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from copy_probe import Llama  # noqa: E402

# The kind of a `Q:` line, by its wording (sdk/sft/src/reading.rs).
Q_KINDS = [
    ("find", re.compile(r"^Which element is the ")),
    ("describe", re.compile(r"^What is element ")),
    ("click", re.compile(r"^Click the ")),
    ("fill", re.compile(r"^Fill the ")),
    ("select", re.compile(r"^Select '")),
    ("value", re.compile(r"^What is the value of the ")),
    ("text", re.compile(r"^Which text on the page mentions ")),
    ("cell", re.compile(r"^(What is the .+ of '|What does the list say for ')")),
]


def q_kind(question):
    return next((k for k, p in Q_KINDS if p.search(question)), "other")


def goal_kind(action):
    m = re.match(r"<action>(\w+)\(", action)
    verb = m.group(1) if m else "other"
    return "goal " + {"send_msg_to_user": "message", "select_option": "select"}.get(verb, verb)


def answer_spots(text):
    """(kind, character offset where the answer starts, the answer) of a document's answers."""
    spots = []
    if text.startswith("# Goals\n"):
        acts = text.index("\n# Actions\n") + len("\n# Actions\n")
        for m in re.finditer(r"^\d+\. (.*)$", text[acts:], re.M):
            spots.append((goal_kind(m.group(1)), acts + m.start(1), m.group(1)))
    else:
        for m in re.finditer(r"^Q: (.*)\nA: (.*)$", text, re.M):
            spots.append((q_kind(m.group(1)), m.start(2), m.group(2)))
    return spots


def page_values(text):
    """Every quoted name or value on the page, and the parts of `label: value` list items."""
    page = text.split("## AXTree\n", 1)[1].split("\n\n# ", 1)[0]
    vals = set(re.findall(r"'([^']*)'", page))
    for v in list(vals):
        if ": " in v:
            vals.update(v.split(": ", 1)[1].split(" (")[:1])
    return {v for v in vals if v}


def decode(model, tok, ids, limit=48):
    """Greedy tokens after `ids` until a newline (or `limit`), as text."""
    logp, past = model.run(ids)
    out = []
    for _ in range(limit):
        nxt = int(np.argmax(logp[-1]))
        out.append(nxt)
        if "\n" in tok.decode(out):
            break
        logp, past = model.run([nxt], past)
    return tok.decode(out).split("\n", 1)[0]


def main(argv):
    opts = {"--docs": 60, "--per-doc": 6, "--show": 0}
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] in opts:
            opts[argv[i]] = int(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    if len(rest) < 3:
        sys.exit(__doc__)
    models, tok_dir, reading = rest[:1] + rest[3:], rest[1], rest[2]
    tok = Tokenizer.from_file(str(Path(tok_dir) / "tokenizer.json"))
    cfg = json.loads((Path(tok_dir) / "tokenizer_config.json").read_text())
    bos = tok.token_to_id(cfg["bos_token"]) if cfg.get("bos_token") else None
    docs = [json.loads(line)["text"] for line in Path(reading).read_text().splitlines() if line.strip()]
    # As many page documents as goal documents, spread over the file.
    pages = [d for d in docs if not d.startswith("# Goals\n")]
    goals = [d for d in docs if d.startswith("# Goals\n")]
    n = opts["--docs"] // 2
    chosen = pages[:: max(1, len(pages) // n)][:n] + goals[:: max(1, len(goals) // n)][:n]
    for model_dir in models:
        model = Llama(model_dir)
        right, total, on_page, shown = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
        for d in chosen:
            enc = tok.encode(d, add_special_tokens=False)
            spots = answer_spots(d)
            step = max(1, len(spots) // opts["--per-doc"])
            vals = page_values(d)
            for kind, start, answer in spots[::step][: opts["--per-doc"]]:
                # The prompt: every token that ends before the answer's first character.
                k = sum(1 for (_, e) in enc.offsets if e <= start)
                ids = ([bos] if bos is not None else []) + enc.ids[:k]
                got = decode(model, tok, ids).strip()
                total[kind] += 1
                right[kind] += got == answer
                if got != answer and shown[kind] < opts["--show"]:
                    shown[kind] += 1
                    print(f"  {kind}: wrote {got!r}, expected {answer!r}")
                said = re.sub(r"^<action>send_msg_to_user\(['\"](.*)['\"]\)</action>$", r"\1", got)
                on_page[kind] += said in vals
        print(f"{model_dir}: {sum(total.values())} answers of {len(chosen)} documents")
        print("kind | answers | right | some page value said")
        for kind in sorted(total):
            extra = f"{on_page[kind]}" if kind in ("value", "cell", "goal message") else ""
            print(f"{kind} | {total[kind]} | {right[kind]} ({right[kind] / total[kind]:.2f}) | {extra}")


if __name__ == "__main__":
    main(sys.argv[1:])
