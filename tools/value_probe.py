#!/usr/bin/env python3
"""Can a model copy the value its final message needs, given everything before it?

The knowledge-base answers (`The Facilities team in Sydney can be reached on ext. 6785.`) end
with a value that stands beside the goal's key on the page, on a line like several others
(`... in Tokyo can be reached on ext. 5854 ...`). This probe teacher-forces each expert final
message of `support_contact` and `travel_policy` up to that value and decodes the next tokens
greedily: a model that can look the value up by its key gives it. The same lookups are asked in
the layouts a model may know best, so a failure can be told from a format the model never saw:

  agent                  the agent's prompt as trained, then the message up to the value
  agent, page last       the same without the history and action-space sections after the page
  reading, key           the reading corpus's layout: the page, `Q: Which text on the page
                         mentions 'Sydney'?`, `A:` and the page's own line up to the value
  reading, goal          the same with the task's goal as the question
  reading, message       the goal as the question and the message up to the value as the answer

    python3 tools/value_probe.py TOKENIZER PREVIEW N MODEL...

TOKENIZER is a `tokenizer` node's directory, PREVIEW an `sft/build` preview of the test
instances' steps (`preview_examples: 100000`; docs/paper.md shows the node), N how many final
messages to ask at most, MODEL a model directory (several: one line each). Needs numpy and
tokenizers.
"""
import re
import sys
from collections import defaultdict
from pathlib import Path

from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from copy_probe import Llama, examples  # noqa: E402
from reading_probe import decode  # noqa: E402

VALUE = re.compile(r"(\$?\d[\d.,:]*)")


def lookups(preview, n):
    """(value, {layout: prompt ending right before the value}) for up to n final messages."""
    out = []
    for task, prompt, resp in examples(preview):
        if "send_msg_to_user" not in resp or not task.endswith(("support_contact", "travel_policy")):
            continue
        found = list(VALUE.finditer(resp))
        if not found:
            continue
        value = found[-1].group(1).rstrip(".")
        before = resp[: found[-1].start()].rstrip(" ")  # the value's token carries its leading space
        head, page = prompt.split("# Current page\n", 1)
        page = re.split(r"\n\n# (?:History of past actions|Action space)", page)[0]
        goal = re.search(r"# Goal\n(.*?)\n\n# Current page", prompt, re.S).group(1)
        line = next((l for l in page.splitlines() if "StaticText" in l and value in l), None)
        if not line:
            continue
        text = line.split("StaticText '", 1)[1]
        key = next((w for w in re.findall(r"[A-Z][a-z]+", before)[::-1] if w in text), None)
        if key is None:
            continue
        on_page = text[: text.index(value)].rstrip(" ")
        reading = "<|bos|># Current page\n" + page + "\n\n# Questions\n"
        out.append((value, {
            "agent": prompt + before,
            "agent, page last": head + "# Current page\n" + page + "\n<|end|>\n<|start|>assistant\n" + before,
            "reading, key": reading + f"Q: Which text on the page mentions '{key}'?\nA: " + on_page,
            "reading, goal": reading + f"Q: {goal}\nA: " + on_page,
            "reading, message": reading + f"Q: {goal}\nA: " + before,
        }))
        if len(out) == n:
            break
    return out


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    tok = Tokenizer.from_file(str(Path(argv[0]) / "tokenizer.json"))
    items = lookups(argv[1], int(argv[2]))
    print(f"{len(items)} final messages")
    for model_dir in argv[3:]:
        model = Llama(model_dir)
        right = defaultdict(int)
        for value, layouts in items:
            for name, prompt in layouts.items():
                got = decode(model, tok, tok.encode(prompt, add_special_tokens=False).ids, limit=4)
                right[name] += got.strip().startswith(value)
        print(model_dir, " | ".join(f"{name}: {right[name]}/{len(items)}" for name in items[0][1]) if items else "", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
