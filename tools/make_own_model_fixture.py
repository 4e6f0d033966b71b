#!/usr/bin/env python3
"""Makes tests/fixtures/own/: a user's own models and traces, for the "your own models and
traces" run of the paper pipeline (pipelines/own-data.yaml, tests/tests/own_data.rs).

What it writes (about 180 KB in all, committed; CI never runs this script):

- `base/` and `instruct/`: a tiny Llama pair made with `transformers` — `LlamaForCausalLM`,
  hidden 24, 2 layers, 4 attention heads (head_dim 6), 2 key/value heads, intermediate 48,
  vocabulary 400, tied embeddings, max_position_embeddings 2048, float32, `model.safetensors`.
  (hidden 24 rather than 32 keeps two float32 models under the fixture budget.)
  `base` is a seeded random init trained for 60 AdamW steps of next-token loss on
  MiniArena-like text (pages and prompts); `instruct` is `base` trained for 40 more steps on
  chat conversations (page-reading questions and answers) rendered with the chat template.
  Both hold the same tokenizer files.
- The tokenizer, in both model directories: a byte-level BPE of 400 tokens trained with the
  `tokenizers` library on the same text, special tokens `<|bos|>`, `<|eos|>`, `<|start|>`,
  `<|end|>` (ids 0–3), the same pre-tokenizer and decoder as `sft/tokenizer`'s
  (`agentmerge_sft::tokenizer::train_bpe`), and a `tokenizer_config.json` with exactly the
  fields `agentmerge_sft::tokenizer::save` writes: `bos_token`, `eos_token`, `pad_token`,
  and AgentMerge's default `chat_template` (`agentmerge_sft::template::DEFAULT_TEMPLATE`).
  The script checks that `transformers` renders the template as AgentMerge does.
- `traces.jsonl.gz`: AgentLab traces converted with tools/agentlab_to_jsonl.py from a synthetic
  AgentLab experiment directory this script writes (pickled `ExpArgs` / `StepInfo` /
  `AgentInfo` of stand-in `agentlab` and `browsergym` classes, `summary_info.json`, the same
  way tests/tests/agentlab_converter.rs builds its experiment): 6 episodes on MiniArena
  templates that pipelines/paper.yaml plays, with MiniArena-style small pages (AXTree text
  with bids) —
    `miniarena.menu.impersonate_user`, seeds 1–4: successful, 4 actions each, two by a
      GPT-4o agent with thoughts and two by a Llama-3-70B agent without;
    `miniarena.menu.impersonate_user`, seed 5: a failure (the wrong user; reward 0);
    `miniarena.menu.navigate_to_module`, seed 7: successful, 3 actions (a template the paper
      pipeline holds out: never fine-tuned on).
  So `sft/build` keeps 16 action steps (every action's bid is on its page).

Run from the repository root, with Python 3 and torch, transformers and tokenizers installed:

    python3 tools/make_own_model_fixture.py            # writes tests/fixtures/own/
    python3 tools/make_own_model_fixture.py --out DIR  # elsewhere

Made with Python 3.11.7, torch 2.15.0, transformers 5.25.0 and tokenizers 0.23.3 (printed when
it runs; the models are trained on the CPU, in about a minute on 2 cores). Seeded: rerunning it
with the same versions rewrites the same bytes. The tests compare against the committed files,
so rerun it only to change the fixture, then `cargo test -p agentmerge-tests --test own_data`.
"""

import argparse
import dataclasses
import gzip
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# agentmerge_sft::template::DEFAULT_TEMPLATE, verbatim.
DEFAULT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start|>{{ m.role }}\n{{ m.content }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)
SPECIALS = ["<|bos|>", "<|eos|>", "<|start|>", "<|end|>"]
VOCAB = 400

# The prompt pieces of agentmerge_sft::prompt (AgentLab's), for the tokenizer's corpus.
ACTION_SPACE = (
    "# Action space\nclick(bid), dblclick(bid), fill(bid, value), select_option(bid, options), check(bid), uncheck(bid), "
    "hover(bid), press(bid, key), focus(bid), clear(bid), scroll(dx, dy), goto(url), go_back(), send_msg_to_user(text), "
    "report_infeasible(reason), noop()\n"
)

FIRST = ["Priya", "Bianca", "Elena", "Hiro", "Kara", "Rosa", "Victor", "Wes", "Beth", "Chen", "Tomas", "Irene", "Marco", "Carla", "Aisha", "Lars"]
LAST = ["Johansson", "Rossi", "Tanaka", "Mensah", "Castro", "Xu", "Bianchi", "Abbott", "Volkov", "Quispe", "Anglin", "Evans", "Garcia", "Okafor", "Novak", "Berg"]
APPS = ["Acme Facilities", "Stark Parking", "Wayne Fleet", "Umbrella Labs", "Globex Travel"]
BUILTIN_APPS = ["Asset", "Change", "Incident", "Knowledge", "Performance Analytics", "Problem", "Self-Service", "Service Catalog", "User Administration"]
MODULES = ["All Requests", "Open Requests", "My Assignments", "Locations", "Archived", "Reports", "Vehicles", "Bookings"]
HOME = "http://miniarena.local/now/nav/ui/home"


# ---------------------------------------------------------------------------------------------
# MiniArena-style pages (small page size), as BrowserGym AXTree text.


def banner(o, user="System Administrator", menu_open=False, nav_open=False, impersonating=None):
    lines = [
        f"\t[a{o}] banner 'MiniArena'",
        f"\t\t[a{o + 1}] button 'All', expanded={nav_open}",
        f"\t\t[a{o + 2}] link 'MiniArena home'",
        f"\t\t[a{o + 3}] button 'User menu: {user}', expanded={menu_open}",
    ]
    if menu_open:
        lines += [f"\t\t[a{o + 4}] menu 'User menu'", f"\t\t\t[a{o + 5}] menuitem 'Impersonate user'"]
    if impersonating:
        lines.append(f"\t\tStaticText 'Impersonating {impersonating}'")
    return lines


def home_main(o, user="System Administrator"):
    return [
        f"\t[b{o}] main ''",
        f"\t\t[b{o + 1}] heading 'Welcome, {user}'",
        f"\t\t[b{o + 2}] list 'Quick links'",
        f"\t\t\t[b{o + 3}] listitem ''",
        f"\t\t\t\t[b{o + 4}] link 'Order something from the Service Catalog'",
        f"\t\t\t[b{o + 5}] listitem ''",
        f"\t\t\t\t[b{o + 6}] link 'Search the Knowledge Base'",
        f"\t\t\t[b{o + 7}] listitem ''",
        f"\t\t\t\t[b{o + 8}] link 'View dashboards'",
    ]


def root(title, focused=True):
    return f"RootWebArea '{title} | MiniArena'" + (", focused" if focused else "")


def impersonate_episode(rng, wrong=False):
    """(goal, [(axtree, focused bid, action, think)], final axtree, success) of
    miniarena.menu.impersonate_user; `wrong` picks another user (a failure)."""
    o = rng.randrange(1, 60)
    people = sorted(rng.sample([f"{f} {l}" for f in FIRST for l in LAST], 6))
    target = rng.choice(people)
    chosen = rng.choice([p for p in people if p != target]) if wrong else target
    goal = f'Impersonate the user "{target}".'

    def dialog(value, selected):
        lines = [f"\t[g{o}] dialog 'Impersonate user'", f"\t\t[g{o + 1}] combobox 'User' value='{value}'" + (", focused" if selected else "")]
        for i, p in enumerate(["-- Select a user --"] + people):
            lines.append(f"\t\t\t[g{o + 2 + i}] option '{p}', selected={p == value}")
        lines += [f"\t\t[g{o + 9}] button 'Impersonate user'", f"\t\t[g{o + 10}] button 'Cancel'"]
        return lines

    pages = [
        "\n".join([root("Home")] + banner(o) + home_main(o)),
        "\n".join([root("Home")] + banner(o, menu_open=True) + home_main(o)),
        "\n".join([root("Home")] + banner(o) + dialog("-- Select a user --", False) + home_main(o)),
        "\n".join([root("Home", focused=False)] + banner(o) + dialog(chosen, True) + home_main(o)),
    ]
    final = "\n".join([root("Home")] + banner(o, user=chosen, impersonating=chosen) + home_main(o, user=chosen))
    actions = [f"click('a{o + 3}')", f"click('a{o + 5}')", f"select_option('g{o + 1}', '{chosen}')", f"click('g{o + 9}')"]
    thoughts = [
        f"To impersonate {target} I need the user menu in the banner. The button 'User menu: System Administrator' [a{o + 3}] opens it.",
        f"The user menu is open and lists 'Impersonate user' [a{o + 5}]; clicking it opens the impersonation dialog.",
        f"The dialog asks for a user in the combobox [g{o + 1}]. The goal names {target}, so I select that option.",
        f"{chosen} is selected. Clicking the button 'Impersonate user' [g{o + 9}] confirms the dialog and should complete the task.",
    ]
    focused = [None, None, None, f"g{o + 1}"]
    return goal, list(zip(pages, focused, actions, thoughts)), final, not wrong


def navigate_episode(rng):
    """The same for miniarena.menu.navigate_to_module."""
    o = rng.randrange(1, 60)
    app = rng.choice(APPS)
    modules = rng.sample(MODULES, 5)
    module = rng.choice(modules)
    goal = f'Navigate to the "{module}" module of the "{app}" application.'
    apps = sorted(BUILTIN_APPS + [app, rng.choice([a for a in APPS if a != app])])

    def navigator(filter_value, expanded):
        lines = [f"\t[n{o}] navigation 'Application navigator'", f"\t\t[n{o + 1}] textbox 'Filter navigator' value='{filter_value}'" + (", focused" if expanded else "")]
        if expanded:
            lines.append(f"\t\t[n{o + 2}] button '{app}', expanded=True")
            lines += [f"\t\t\t[n{o + 3 + i}] link '{m}'" for i, m in enumerate(modules)]
        else:
            lines += [f"\t\t[n{o + 2 + i}] button '{a}', expanded=False" for i, a in enumerate(apps)]
        return lines

    target_bid = f"n{o + 3 + modules.index(module)}"
    pages = [
        "\n".join([root("Home")] + banner(o) + home_main(o)),
        "\n".join([root("Home")] + banner(o, nav_open=True) + navigator("", False) + home_main(o)),
        "\n".join([root("Home", focused=False)] + banner(o, nav_open=True) + navigator(app, True) + home_main(o)),
    ]
    slug = "x_" + app.lower().replace(" ", "_") + "_" + module.lower().replace(" ", "_")
    final = "\n".join(
        [root(f"{app} - {module}")]
        + banner(o)
        + [
            f"\t[b{o}] main ''",
            f"\t\t[b{o + 1}] heading '{app}: {module}'",
            f"\t\tStaticText 'This is the {module} page of the {app} application.'",
            "\t\tStaticText 'No records to display.'",
            f"\t\t[b{o + 2}] link 'Back to home'",
        ]
    )
    actions = [f"click('a{o + 1}')", f"fill('n{o + 1}', '{app}')", f"click('{target_bid}')"]
    thoughts = [
        f"The module is in the application navigator, which the button 'All' [a{o + 1}] opens.",
        f"Typing \"{app}\" into the textbox 'Filter navigator' [n{o + 1}] narrows the menu to its modules.",
        f"The link '{module}' [{target_bid}] is the module the goal asks for. This should complete the task.",
    ]
    focused = [None, None, f"n{o + 1}"]
    return goal, list(zip(pages, focused, actions, thoughts)), final, f"http://miniarena.local/{slug}.do"


def other_pages(rng):
    """Knowledge-base and dashboard pages, so the tokenizer knows the other templates' words."""
    o = rng.randrange(1, 60)
    city = rng.choice(["Tokyo", "Lisbon", "Dublin", "Boston", "Sydney", "Singapore"])
    kb = [root(f"Business travel guidelines: {city}")] + banner(o) + [
        f"\t[b{o}] main ''",
        f"\t\t[b{o + 1}] link 'Knowledge'",
        f"\t\t[b{o + 2}] heading 'Business travel guidelines: {city}'",
        "\t\tStaticText 'KB0010003 · Travel'",
        f"\t\t[d{o}] region 'Article body'",
        f"\t\t\t[d{o + 1}] heading 'Limits for {city}'",
        f"\t\t\t[d{o + 2}] table ''",
        f"\t\t\t\t[d{o + 3}] row ''",
        f"\t\t\t\t\t[d{o + 4}] cell 'Daily meal allowance'",
        f"\t\t\t\t\t[d{o + 5}] cell '${rng.randrange(40, 120)}'",
        f"\t\t\t[d{o + 6}] heading 'Details'",
        f"\t\t\tStaticText 'The Service Desk team in {city} can be reached on ext. {rng.randrange(1000, 9999)} (09:00-18:00).'",
        f"\t\t\tStaticText 'On macOS Sonoma, version {rng.randrange(1, 30)}.{rng.randrange(10)}.{rng.randrange(10)} of Notepad++ has the status: Approved.'",
    ]
    chart = rng.choice(["Resolved incidents by Priority", "Hardware assets by Channel", "Open problems by State"])
    dash = [root("Asset Overview")] + banner(o) + [
        f"\t[b{o}] main ''",
        f"\t\t[b{o + 1}] link 'Dashboards'",
        f"\t\t[b{o + 2}] heading 'Asset Overview'",
        f"\t\tStaticText 'Owner: {rng.choice(FIRST)} {rng.choice(LAST)}'",
        f"\t\t[b{o + 3}] tablist 'Dashboard tabs'",
        f"\t\t\t[b{o + 4}] tab 'SLA', selected=True",
        f"\t\t[d{o}] tabpanel 'SLA'",
        f"\t\t\t[d{o + 1}] figure '{chart}'",
        "\t\t\t\tStaticText 'Bar chart'",
        f"\t\t\t\t[d{o + 2}] list ''",
    ] + [f"\t\t\t\t\t[d{o + 3 + i}] listitem '{k}: {rng.randrange(100)}'" for i, k in enumerate(["1 - Critical", "2 - High", "3 - Moderate", "Email", "Phone"])]
    return ["\n".join(kb), "\n".join(dash)]


def step_prompt(goal, url, axtree, focused, history):
    """A user prompt laid out as agentmerge_sft::prompt writes it (for the tokenizer's corpus)."""
    text = f"# Goal\n{goal}\n\n# Current page\nURL: {url}\n"
    if focused:
        text += f"Focused element: [{focused}]\n"
    text += f"\n## AXTree\n{axtree}\n\n"
    if history:
        text += "# History of past actions\n" + "".join(f"## step {i}\n<action>{a}</action>\n" for i, a in enumerate(history)) + "\n"
    return text + ACTION_SPACE + "\nGive exactly one action inside <action></action>.\n"


def corpus(rng):
    """Plain texts (prompts, responses, pages) for the tokenizer and the base model, and chat
    conversations for the instruct model."""
    texts, chats = [], []
    for i in range(120):
        if i % 2 == 0:
            goal, steps, final, _ = impersonate_episode(rng)
            url = HOME
        else:
            goal, steps, final, url = navigate_episode(rng)
        history = []
        for page, focused, action, think in steps:
            texts.append(step_prompt(goal, HOME, page, focused, history))
            texts.append(f"<think>{think}</think><action>{action}</action>")
            history.append(action)
            bid = action.split("'")[1]
            line = next(l for l in page.splitlines() if f"[{bid}]" in l).strip()
            role_name = line.split("] ", 1)[1].split(",")[0]
            chats.append([{"role": "user", "content": f"{page}\n\nWhich element is the {role_name}?"}, {"role": "assistant", "content": bid}])
            chats.append([{"role": "user", "content": f"{page}\n\nGoal: {goal}\nWhat is the next action?"}, {"role": "assistant", "content": action}])
        texts.append(final)
        texts.extend(other_pages(rng))
    return texts, chats


# ---------------------------------------------------------------------------------------------
# Tokenizer and models.


def make_tokenizer(texts, out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # As agentmerge_sft::tokenizer::train_bpe: ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, min_frequency=2, show_progress=False, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=False)
    # The fields agentmerge_sft::tokenizer::save writes, in its order.
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|eos|>",
        "model_max_length": 1000000,
        "clean_up_tokenization_spaces": False,
        "chat_template": DEFAULT_TEMPLATE,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    return tok


def check_tokenizer(dir):
    """transformers reads the tokenizer and renders the chat template as AgentMerge does."""
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(dir)
    msgs = [{"role": "system", "content": ""}, {"role": "user", "content": "# Goal\nhi"}]
    got = t.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    want = "<|bos|><|start|>system\n<|end|>\n<|start|>user\n# Goal\nhi<|end|>\n<|start|>assistant\n"
    assert got == want, (got, want)
    assert (t.bos_token_id, t.eos_token_id) == (0, 1), (t.bos_token_id, t.eos_token_id)
    text = "<|bos|>click('a12')<|eos|>"
    assert t.decode(t(text, add_special_tokens=False)["input_ids"]) == text


def batches(rows, seq, batch, rng):
    """Packs token rows into a stream and yields [batch, seq] windows forever."""
    import torch

    stream = [i for r in rows for i in r]
    while True:
        starts = [rng.randrange(0, len(stream) - seq - 1) for _ in range(batch)]
        yield torch.tensor([stream[s : s + seq] for s in starts])


def train(model, rows, steps, lr, rng):
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    gen = batches(rows, 128, 8, rng)
    for step in range(steps):
        x = next(gen)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (0, steps - 1):
            print(f"  step {step + 1}/{steps}: loss {loss.item():.3f}", file=sys.stderr)
    model.eval()


def make_models(tok, texts, chats, out, rng):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=1,
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(cfg).float()
    plain = [[0] + tok.encode(t).ids + [1] for t in texts]
    print("base: next-token training on MiniArena-like text", file=sys.stderr)
    train(model, plain, 60, 3e-3, rng)
    save_model(model, os.path.join(out, "base"))
    # The chat turns rendered with DEFAULT_TEMPLATE, then the eos.
    chat_rows = [[0] + tok.encode("".join(f"<|start|>{m['role']}\n{m['content']}<|end|>\n" for m in c)).ids + [1] for c in chats]
    print("instruct: the base trained on chat conversations", file=sys.stderr)
    train(model, chat_rows, 40, 1e-3, rng)
    save_model(model, os.path.join(out, "instruct"))


def save_model(model, dir):
    model.save_pretrained(dir, safe_serialization=True)
    from safetensors import safe_open

    with safe_open(os.path.join(dir, "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype.is_floating_point and f.get_tensor(k).element_size() == 4 for k in f.keys())


# ---------------------------------------------------------------------------------------------
# A synthetic AgentLab experiment, converted with tools/agentlab_to_jsonl.py.
#
# AgentLab pickles `ExpArgs` (exp_args.pkl) and one `StepInfo` per step (step_N.pkl.gz); their
# classes live in modules (agentlab..., browsergym...) that are not installed here, so they are
# defined below and registered under those module names while pickling only, as the
# converter's own test does. The converter then reads them back with its stand-ins.


def module(name):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    return sys.modules[name]


def place(mod, obj):
    obj.__module__ = mod
    obj.__qualname__ = obj.__name__
    setattr(module(mod), obj.__name__, obj)
    return obj


@dataclasses.dataclass
class StepInfo:
    step: int = None
    obs: dict = None
    reward: float = 0
    raw_reward: float = 0
    terminated: bool = None
    truncated: bool = None
    action: str = None
    agent_info: dict = dataclasses.field(default_factory=dict)
    stats: dict = None
    task_info: dict = None


@dataclasses.dataclass
class AgentInfo:
    think: str = None
    chat_messages: list = None
    stats: dict = dataclasses.field(default_factory=dict)
    extra_info: dict = None


@dataclasses.dataclass
class EnvArgs:
    task_name: str
    task_seed: int = None
    max_steps: int = 15


@dataclasses.dataclass
class OpenAIModelArgs:
    model_name: str
    temperature: float = 0.1


@dataclasses.dataclass
class GenericAgentArgs:
    chat_model_args: object = None
    flags: object = None
    agent_name: str = None


@dataclasses.dataclass
class ExpArgs:
    agent_args: object
    env_args: object
    exp_dir: str = None
    err_msg: str = None


for _mod, _cls in [
    ("agentlab.experiments.loop", StepInfo),
    ("browsergym.experiments.agent", AgentInfo),
    ("agentlab.experiments.loop", EnvArgs),
    ("agentlab.llm.chat_api", OpenAIModelArgs),
    ("agentlab.agents.generic_agent.generic_agent", GenericAgentArgs),
    ("agentlab.experiments.loop", ExpArgs),
]:
    place(_mod, _cls)

AGENTS = {
    "gpt-4o": ("openai/gpt-4o-2024-05-13", "GenericAgent-gpt-4o", True),
    "llama": ("meta-llama/Meta-Llama-3-70B-Instruct", "GenericAgent-llama-3-70b", False),
}


def write_episode(root, task, seed, agent, goal, steps, final, final_url, reward):
    model_name, agent_name, cot = AGENTS[agent]
    d = os.path.join(root, "study", f"2024-06-0{1 + seed % 9}_10-00-00_{agent_name}_on_{task}_{seed}")
    os.makedirs(d)
    exp = ExpArgs(
        agent_args=GenericAgentArgs(chat_model_args=OpenAIModelArgs(model_name=model_name), flags={"use_thinking": cot}, agent_name=agent_name),
        env_args=EnvArgs(task_name=task, task_seed=seed),
    )
    with open(os.path.join(d, "exp_args.pkl"), "wb") as f:
        pickle.dump(exp, f)
    last = ""
    for i, (page, focused, action, think) in enumerate(steps):
        obs = {"goal": goal, "goal_object": [{"type": "text", "text": goal}], "url": HOME, "axtree_txt": page, "focused_element_bid": focused or "", "last_action": last, "last_action_error": ""}
        info = StepInfo(step=i, obs=obs, reward=0.0, raw_reward=0.0, terminated=False, truncated=False, action=action, agent_info=AgentInfo(think=think if cot else None, chat_messages=[], stats={}))
        with gzip.open(os.path.join(d, f"step_{i}.pkl.gz"), "wb") as f:
            pickle.dump(info, f)
        last = action
    obs = {"goal": goal, "url": final_url, "axtree_txt": final, "focused_element_bid": "", "last_action": last, "last_action_error": ""}
    end = StepInfo(step=len(steps), obs=obs, reward=reward, raw_reward=reward, terminated=True, truncated=False, action=None, agent_info={})
    with gzip.open(os.path.join(d, f"step_{len(steps)}.pkl.gz"), "wb") as f:
        pickle.dump(end, f)
    with open(os.path.join(d, "summary_info.json"), "w") as f:
        json.dump({"n_steps": len(steps), "cum_reward": reward, "cum_raw_reward": reward, "err_msg": None, "stack_trace": None, "terminated": True, "truncated": False}, f, indent=4)


def make_traces(out, rng):
    with tempfile.TemporaryDirectory() as tmp:
        for seed, agent in [(1, "gpt-4o"), (2, "gpt-4o"), (3, "llama"), (4, "llama")]:
            goal, steps, final, _ = impersonate_episode(rng)
            write_episode(tmp, "miniarena.menu.impersonate_user", seed, agent, goal, steps, final, HOME, 1.0)
        goal, steps, final, _ = impersonate_episode(rng, wrong=True)
        write_episode(tmp, "miniarena.menu.impersonate_user", 5, "llama", goal, steps, final, HOME, 0.0)
        goal, steps, final, url = navigate_episode(rng)
        write_episode(tmp, "miniarena.menu.navigate_to_module", 7, "gpt-4o", goal, steps, final, url, 1.0)
        plain = os.path.join(tmp, "traces.jsonl")
        subprocess.run([sys.executable, os.path.join(HERE, "agentlab_to_jsonl.py"), tmp, "-o", plain, "--strict"], check=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        # Compressed here rather than by the converter (`-o x.jsonl.gz` works too) to leave the
        # gzip header's time out: the same input gives the same bytes.
        with open(plain, "rb") as f, open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z:
            z.write(f.read())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "own"))
    args = p.parse_args()

    import tokenizers
    import torch
    import transformers

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}", file=sys.stderr)
    for sub in ("base", "instruct"):
        shutil.rmtree(os.path.join(args.out, sub), ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)

    rng = random.Random(0)
    texts, chats = corpus(rng)
    tok_dir = os.path.join(args.out, ".tokenizer")
    tok = make_tokenizer(texts, tok_dir)
    check_tokenizer(tok_dir)
    make_models(tok, texts, chats, args.out, random.Random(1))
    for sub in ("base", "instruct"):
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(args.out, sub, f))
        check_tokenizer(os.path.join(args.out, sub))
    shutil.rmtree(tok_dir)
    make_traces(os.path.join(args.out, "traces.jsonl.gz"), random.Random(2))

    total = 0
    for dirpath, _, files in os.walk(args.out):
        for f in sorted(files):
            size = os.path.getsize(os.path.join(dirpath, f))
            total += size
            print(f"  {os.path.relpath(os.path.join(dirpath, f), ROOT)}: {size} bytes", file=sys.stderr)
    print(f"{total} bytes in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
