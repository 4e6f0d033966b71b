#!/usr/bin/env python3
"""Lookup drills: small random tables in the AXTree page format, and questions answered by
finding a row's key and copying the cell beside it — the lookup every final answer of the
knowledge-base and dashboard tasks needs, with keys and values no model can have memorised.
Written as JSON Lines `{"text": ...}` for `sft/tokenize`'s `paths` (docs/paper.md, *Can the
base learn to look up at all?*).

    python3 tools/lookup_drills.py OUT.jsonl N [--seed S] [--rows R] [--vocab V] [--key-words K]
    python3 tools/lookup_drills.py OUT.jsonl N --pages READING.jsonl [--seed S]
    python3 tools/lookup_drills.py OUT.jsonl N --complete READING.jsonl [--seed S]

The first form: tables of R rows (default 3) whose keys are K words (default 1) drawn from the
first V (default 20) of 40 fixed words, values 10–99, four questions `What is the Count of
'KEY'?`. The second: the mix pretrained beside the reading corpus — words drawn from the first
3,000 documents of READING.jsonl (the `reading` node's text), 3–9 rows, keys of 1–3 words,
values numbers, extensions, prices or words, six questions each (a cell by its key, which
element a cell is, a click), half of the documents as goal documents (questions before the
page, answers after it). The third: lookups on the real pages of READING.jsonl — for up to N
of its documents, the page again with up to eight questions whose answer is a value that stands
beside a key on the page and nowhere in the question: `Complete from the page: 'The Facilities
team in Sydney can be reached on ext.'` → `6785` (a text line cut before its first number,
kept only where no other line starts the same way) and `In the row of 'Ubuntu 22.04', what is
the next cell?` → `17.0.9`. The same seed gives the same file.
"""
import argparse
import json
import random
import re

WORDS = ["apple", "river", "stone", "cloud", "green", "table", "light", "north", "paper", "glass",
         "chair", "music", "plant", "horse", "bread", "train", "water", "smile", "dream", "sugar",
         "Berlin", "Oslo", "Paris", "Tokyo", "Sydney", "Dublin", "Warsaw", "Toronto", "Madrid", "Lisbon",
         "Network", "Database", "Hardware", "Software", "Finance", "Legal", "Payroll", "Security", "Facilities", "Benefits"]


def tiny(rng, rows, vocab, key_words):
    words = WORDS[:vocab]
    keys = []
    while len(keys) < rows:
        k = " ".join(rng.choice(words) for _ in range(key_words))
        if k not in keys:
            keys.append(k)
    values = [str(rng.randint(10, 99)) for _ in keys]
    b = rng.randint(10, 60)
    lines = [f"\t\t[d{b + 3 * i}] row ''\n\t\t\t[d{b + 3 * i + 1}] cell '{k}'\n\t\t\t[d{b + 3 * i + 2}] cell '{v}'" for i, (k, v) in enumerate(zip(keys, values))]
    text = "# Current page\nURL: http://miniarena.local/drill\n\n## AXTree\n\t[d9] table 'Count'\n" + "\n".join(lines)
    qs = "".join(f"Q: What is the Count of '{keys[j]}'?\nA: {values[j]}\n" for j in [rng.randrange(rows) for _ in range(4)])
    return text + "\n\n# Questions\n" + qs


def mixed(rng, words):
    def phrase(k):
        return " ".join(rng.choice(words) for _ in range(k))

    def value():
        r = rng.random()
        if r < 0.5:
            return str(rng.randint(0, 999))
        if r < 0.7:
            return f"ext. {rng.randint(1000, 9999)}"
        if r < 0.8:
            return f"${rng.randint(10, 999)}"
        return phrase(rng.randint(1, 2))

    letter, last = rng.choice("abcdefg"), [rng.randint(10, 80)]

    def bid():
        last[0] += 1
        return f"{letter}{last[0]}"

    h1, h2 = phrase(1), phrase(rng.randint(1, 2))
    lines = [f"RootWebArea '{phrase(2)} | MiniArena', focused", f"\t[{bid()}] table '{phrase(3)}'", f"\t\t[{bid()}] row ''"]
    lines += [f"\t\t\t[{bid()}] columnheader '{h}'" for h in (h1, h2)]
    rows = []
    for _ in range(rng.randint(3, 9)):
        k = phrase(rng.randint(1, 3))
        if k in [r[0] for r in rows]:
            continue
        v = value()
        lines.append(f"\t\t[{bid()}] row ''")
        kb = bid()
        lines.append(f"\t\t\t[{kb}] cell '{k}'")
        lines.append(f"\t\t\t[{bid()}] cell '{v}'")
        rows.append((k, v, kb))
    qa = []
    for _ in range(6):
        k, v, kb = rng.choice(rows)
        t = rng.random()
        if t < 0.5:
            qa.append((f"What is the {h2} of '{k}'?", v))
        elif t < 0.75:
            qa.append((f"Which element is the cell '{k}'?", kb))
        else:
            qa.append((f"Click the cell '{k}'.", f"<action>click('{kb}')</action>"))
    text = "# Current page\nURL: http://miniarena.local/drill\n\n## AXTree\n" + "\n".join(lines)
    if rng.random() < 0.5:
        return text + "\n\n# Questions\n" + "".join(f"Q: {q}\nA: {a}\n" for q, a in qa)
    goals = "".join(f"{i + 1}. {q}\n" for i, (q, _) in enumerate(qa))
    acts = "".join(f"{i + 1}. " + (a if a.startswith("<action>") else f"<action>send_msg_to_user('{a}')</action>") + "\n" for i, (_, a) in enumerate(qa))
    return "# Goals\n" + goals + "\n" + text + "\n\n# Actions\n" + acts


NUMBER = re.compile(r"\$?\d")
TEXT = re.compile(r"^\s*StaticText '(.*)'$")
CELL = re.compile(r"^\s*\[\w+\] (?:cell|gridcell) '(.*)'$")


def complete(rng, doc):
    """The page of a reading document and questions only a lookup answers, or None."""
    page = doc.split("\n\n# Questions\n")[0].split("\n\n# Actions\n")[0]
    if "# Current page" not in page:
        return None
    page = page[page.index("# Current page"):]
    lines = page.splitlines()
    qa, prefixes = [], {}
    for line in lines:
        m = TEXT.match(line)
        n = NUMBER.search(m.group(1)) if m else None
        if n and n.start() > 10:
            head = m.group(1)[: n.start()].rstrip()
            value = m.group(1)[n.start():].split(" ")[0].rstrip(".,;)")
            prefixes.setdefault(head, []).append(value)
    qa += [(f"Complete from the page: '{h}'", v[0]) for h, v in prefixes.items() if len(v) == 1]
    for i, line in enumerate(lines[:-1]):
        a, b = CELL.match(line), CELL.match(lines[i + 1])
        if a and b and line.startswith(lines[i + 1][: len(line) - len(line.lstrip())]) and "row ''" in lines[i - 1]:
            qa.append((f"In the row of '{a.group(1)}', what is the next cell?", b.group(1)))
    if not qa:
        return None
    rng.shuffle(qa)
    return page + "\n\n# Questions\n" + "".join(f"Q: {q}\nA: {a}\n" for q, a in qa[:8])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=20)
    ap.add_argument("--key-words", type=int, default=1)
    ap.add_argument("--pages", help="the reading corpus (JSON Lines `text`) to draw words from: the mixed drills")
    ap.add_argument("--complete", help="the reading corpus (JSON Lines `text`) whose pages to ask lookups about")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    if a.complete:
        written = 0
        with open(a.complete) as f, open(a.out, "w") as out:
            for line in f:
                if written == a.n:
                    break
                text = complete(rng, json.loads(line)["text"])
                if text:
                    out.write(json.dumps({"text": text}) + "\n")
                    written += 1
        print(f"{written} documents")
        return
    words = None
    if a.pages:
        found = set()
        with open(a.pages) as f:
            for i, line in enumerate(f):
                found.update(re.findall(r"[A-Za-z]{3,}", json.loads(line)["text"]))
                if i > 3000:
                    break
        words = sorted(found)
    with open(a.out, "w") as f:
        for _ in range(a.n):
            text = mixed(rng, words) if words else tiny(rng, a.rows, a.vocab, a.key_words)
            f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()
