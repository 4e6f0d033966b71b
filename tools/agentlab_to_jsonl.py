#!/usr/bin/env python3
"""Converts AgentLab / BrowserGym experiment directories into AgentMerge's trace format
(JSON Lines, one episode per line; see docs/traces.md).

An AgentLab episode directory holds `step_0.pkl.gz`, `step_1.pkl.gz`, ... (one pickled
`StepInfo` per step), `summary_info.json`, and usually `exp_args.pkl` (task name, seed and
agent arguments) and `goal_object.pkl.gz`. The pickles reference AgentLab, BrowserGym and
numpy classes; this script needs none of them installed (standard library only): unknown
classes are replaced by stand-in objects that keep their attributes, and numpy arrays (the
screenshots, coordinates) are dropped.

Usage:
    python3 tools/agentlab_to_jsonl.py RESULTS_DIR [MORE_DIRS...] -o traces.jsonl.gz
    python3 tools/agentlab_to_jsonl.py EPISODE_DIR -o one.jsonl --model-name gpt-4o

Each input is an episode directory or a directory searched (recursively) for episode
directories. The output is compressed by its extension: `.gz`, `.zst` (needs the `zstandard`
module) or plain. Episodes that cannot be converted are listed on stderr with their directory
and the reason; `--strict` makes any of them an error.
"""

import argparse
import gzip
import json
import os
import pickle
import re
import struct
import sys

# ---------------------------------------------------------------------------------------------
# Unpickling without AgentLab, BrowserGym or numpy installed.

# Standard-library globals a pickle may legitimately need. Anything else becomes a stand-in,
# so loading a pickle never imports or calls arbitrary code.
SAFE_GLOBALS = {
    ("builtins", n)
    for n in ("set", "frozenset", "bytearray", "bytes", "complex", "slice", "range", "list", "dict", "tuple", "str", "int", "float", "bool", "object")
} | {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "deque"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("pathlib", "Path"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
}


class StandIn:
    """An object of a class that is not installed: keeps what the pickle gave it (the
    constructor arguments, the attribute dict or other state, dict items, list items)."""

    _module = "?"
    _name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        obj.__dict__["_kwargs"] = kwargs
        obj.__dict__["_items"] = {}
        obj.__dict__["_list"] = []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        # (dict, slots) from classes with __slots__; pydantic models nest their fields in
        # "__dict__".
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)) and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}
        if isinstance(state, dict):
            inner = state.get("__dict__")
            if isinstance(inner, dict):
                state = {**state, **inner}
            for k, v in state.items():
                if isinstance(k, str):
                    self.__dict__[k] = v
        else:
            self.__dict__["_state"] = state

    # dict and list subclasses are rebuilt with item assignment and append/extend.
    def __setitem__(self, key, value):
        self.__dict__["_items"][key] = value

    def __getitem__(self, key):
        return self.__dict__["_items"][key]

    def append(self, value):
        self.__dict__["_list"].append(value)

    def extend(self, values):
        self.__dict__["_list"].extend(values)

    def __repr__(self):
        return f"<stand-in {self._module}.{self._name}>"


class DroppedArray(StandIn):
    """A numpy array: its data is dropped (screenshots are large and not used)."""


_stand_in_classes = {}


def stand_in_class(module, name):
    key = (module, name)
    if key not in _stand_in_classes:
        base = DroppedArray if module.startswith("numpy") and name in ("_reconstruct", "_frombuffer", "ndarray", "frombuffer") else StandIn
        _stand_in_classes[key] = type(name, (base,), {"_module": module, "_name": name})
    return _stand_in_classes[key]


_NUMPY_FORMATS = {("f", 2): "e", ("f", 4): "f", ("f", 8): "d", ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q", ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q", ("b", 1): "?"}


def numpy_scalar(dtype, data=None, *rest):
    """A numpy scalar (np.float64(1.0) pickles as scalar(dtype('f8'), raw bytes)): decoded to a
    Python number when the dtype is a plain number type, else kept as a stand-in."""
    try:
        code = dtype._args[0]
        state = dtype.__dict__.get("_state")
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "<"
        fmt = _NUMPY_FORMATS[(code[0], int(code[1:]))]
        if isinstance(data, str):  # protocol 0/1 pickles store the bytes as latin-1 text
            data = data.encode("latin-1")
        prefix = {"<": "<", ">": ">", "=": "=", "|": "<"}.get(order, "<")
        return struct.unpack(prefix + fmt, bytes(data))[0]
    except Exception:
        return stand_in_class("numpy", "scalar")(dtype, data, *rest)


class StandInUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("numpy") and name == "scalar":
            return numpy_scalar
        return stand_in_class(module, name)


def load_pickle(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return StandInUnpickler(f).load()


def field(obj, key, default=None):
    """`obj[key]` for dicts, the attribute for stand-ins (or their dict items)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    if isinstance(obj, StandIn):
        if key in obj.__dict__:
            return obj.__dict__[key]
        return obj.__dict__["_items"].get(key, default)
    return getattr(obj, key, default)


def text(v):
    """A string field: None and dropped values become ""."""
    if v is None or isinstance(v, StandIn):
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def number(v, default=0.0):
    """A finite float (JSON has no NaN), or `default`."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        f = float(v)
        return f if f == f and f not in (float("inf"), float("-inf")) else default
    return default


def flag(v):
    return bool(v) if isinstance(v, (bool, int, float)) else False


# ---------------------------------------------------------------------------------------------
# The AXTree object flattened to text, in BrowserGym's `flatten_axtree_to_str` layout:
# one node per line, `[bid] role 'name'`, tab-indented by depth (no visibility filtering, no
# coordinates).

IGNORED_ROLES = {"LineBreak"}
IGNORED_PROPERTIES = {"editable", "readonly", "level", "settable", "multiline", "invalid", "focusable"}
FLAG_PROPERTIES = {"required", "focused", "atomic"}


def _inner_value(d):
    """The `value` of a CDP `{"type": ..., "value": ...}` record, or None."""
    if isinstance(d, dict) and "value" in d:
        return d["value"]
    return None


def flatten_axtree(ax):
    nodes = field(ax, "nodes") or []
    if not isinstance(nodes, list) or not nodes:
        return ""
    index = {}
    for n in nodes:
        if isinstance(n, dict) and "nodeId" in n:
            index.setdefault(n["nodeId"], n)
    lines = []
    # Depth-first with an explicit stack (pages can be deeper than Python's recursion limit).
    stack = [(nodes[0], 0, "")]
    seen = set()
    while stack:
        node, depth, parent_name = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        role = text(_inner_value(node.get("role")))
        printed = False
        name = ""
        if role not in IGNORED_ROLES and "name" in node:
            name = text(_inner_value(node.get("name")))
            attrs = []
            for prop in node.get("properties") or []:
                if not isinstance(prop, dict) or not isinstance(prop.get("value"), dict) or "value" not in prop["value"]:
                    continue
                pname, pval = prop.get("name"), prop["value"]["value"]
                if pname in IGNORED_PROPERTIES:
                    continue
                if pname in FLAG_PROPERTIES:
                    if pval:
                        attrs.append(pname)
                else:
                    attrs.append(f"{pname}={pval!r}")
            skip = (role == "generic" and not attrs) or (role == "StaticText" and name in parent_name)
            if not skip:
                line = role if (role == "generic" and not name) else f"{role} {name.strip()!r}"
                bid = node.get("browsergym_id")
                if bid is not None:
                    line = f"[{bid}] {line}"
                value = node.get("value")
                if isinstance(value, dict) and "value" in value:
                    line += f" value={value['value']!r}"
                if attrs:
                    line += "".join(", " + a for a in attrs)
                lines.append("\t" * depth + line)
                printed = True
        child_depth = depth + 1 if printed else depth
        children = [index[c] for c in node.get("childIds") or [] if c in index and c != node.get("nodeId")]
        for child in reversed(children):
            stack.append((child, child_depth, name))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Categories

WORKARENA_L1 = {
    "knowledge-base-search": "knowledge_base",
    "all-menu": "menu",
    "impersonation": "menu",
    **{f"filter-{t}-list": "list_filter" for t in ("asset", "change-request", "hardware", "incident", "service-catalog-item", "user")},
    **{f"sort-{t}-list": "list_sort" for t in ("asset", "change-request", "hardware", "incident", "service-catalog-item", "user")},
    **{f"create-{t}": "form" for t in ("change-request", "hardware-asset", "incident", "problem", "user")},
    **{
        f"order-{t}": "service_catalog"
        for t in ("apple-mac-book-pro15", "apple-watch", "developer-laptop", "development-laptop-p-c", "ipad-mini", "ipad-pro", "loaner-laptop", "sales-laptop", "standard-laptop")
    },
    **{f"{t}-retrieval": "dashboard" for t in ("single-chart-value", "single-chart-min-max", "multi-chart-value", "multi-chart-min-max")},
}

CATEGORIES = {"form", "list_filter", "list_sort", "service_catalog", "menu", "knowledge_base", "dashboard"}


def infer_category(task_name):
    """The WorkArena L1 category of a task name (`workarena.servicenow.<task>` or MiniArena's
    `miniarena.<category>.<task>`), or "" when unknown (e.g. L2/L3 compositional tasks)."""
    name = task_name.split("/", 1)[1] if task_name.startswith("browsergym/") else task_name
    if name.startswith("workarena.servicenow."):
        return WORKARENA_L1.get(name[len("workarena.servicenow."):], "")
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "miniarena" and parts[1] in CATEGORIES:
        return parts[1]
    return ""


# ---------------------------------------------------------------------------------------------
# One episode


class Skip(Exception):
    """The episode cannot be converted; the message says why."""


STEP_FILE = re.compile(r"^step_(\d+)\.pkl\.gz$")
# AgentLab names episode directories `<date>_<time>_<agent_name>_on_<task_name>_<seed>[_<n>]`.
DIR_NAME = re.compile(r"_on_(?P<task>.+?)_(?P<seed>\d+)(?:_\d+)?$")


def is_episode_dir(path):
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return "summary_info.json" in names or any(STEP_FILE.match(n) for n in names)


def goal_text(obs, episode_dir):
    goal = field(obs, "goal")
    if isinstance(goal, str) and goal:
        return goal
    goal_object = field(obs, "goal_object")
    if goal_object is None:
        path = os.path.join(episode_dir, "goal_object.pkl.gz")
        if os.path.exists(path):
            try:
                goal_object = load_pickle(path)
            except Exception as e:
                raise Skip(f"{path}: cannot read the goal: {e}")
    # A list of chat-style parts: keep the text ones.
    if isinstance(goal_object, (list, tuple)):
        parts = [text(field(p, "text")) for p in goal_object if field(p, "type") == "text"]
        return "\n".join(p for p in parts if p)
    return text(goal_object)


def convert_episode(episode_dir, args):
    names = os.listdir(episode_dir)
    steps_found = sorted(int(m.group(1)) for m in map(STEP_FILE.match, names) if m)
    if not steps_found:
        raise Skip("no step_N.pkl.gz files")
    if steps_found != list(range(len(steps_found))):
        missing = sorted(set(range(steps_found[-1] + 1)) - set(steps_found))
        raise Skip(f"step files are not numbered 0..{steps_found[-1]} without gaps (missing: {', '.join(f'step_{i}.pkl.gz' for i in missing[:5])})")
    summary_path = os.path.join(episode_dir, "summary_info.json")
    if not os.path.exists(summary_path):
        raise Skip("no summary_info.json (the episode did not finish?)")
    try:
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        raise Skip(f"{summary_path}: not valid JSON: {e}")
    if not isinstance(summary, dict):
        raise Skip(f"{summary_path}: not a JSON object")

    # Task, seed and agent: exp_args.pkl, else the directory name.
    task_name, seed, model_name, agent_name = "", None, "", ""
    exp_path = os.path.join(episode_dir, "exp_args.pkl")
    if os.path.exists(exp_path):
        try:
            exp = load_pickle(exp_path)
        except Exception as e:
            raise Skip(f"{exp_path}: cannot unpickle: {type(e).__name__}: {e}")
        env_args, agent_args = field(exp, "env_args"), field(exp, "agent_args")
        task_name = text(field(env_args, "task_name"))
        s = field(env_args, "task_seed")
        seed = s if isinstance(s, int) and not isinstance(s, bool) else None
        agent_name = text(field(agent_args, "agent_name"))
        model_name = text(field(field(agent_args, "chat_model_args"), "model_name"))
    m = DIR_NAME.search(os.path.basename(os.path.normpath(episode_dir)))
    if not task_name and m:
        task_name = m.group("task")
    if seed is None and m:
        seed = int(m.group("seed"))
    if not task_name:
        raise Skip("no task name (exp_args.pkl is missing or has no env_args.task_name, and the directory name is not AgentLab's `..._on_<task>_<seed>`)")
    if seed is None or seed < 0:
        raise Skip("no task seed (exp_args.pkl has no env_args.task_seed, and the directory name does not end in `_<seed>`)")
    if args.model_name is not None:
        model_name = args.model_name
    if args.agent_name is not None:
        agent_name = args.agent_name

    steps = []
    goal = ""
    for i in steps_found:
        path = os.path.join(episode_dir, f"step_{i}.pkl.gz")
        try:
            info = load_pickle(path)
        except Exception as e:
            raise Skip(f"{path}: cannot unpickle: {type(e).__name__}: {e}")
        obs = field(info, "obs")
        if obs is not None and not isinstance(obs, dict):
            raise Skip(f"{path}: obs is a {type(obs).__name__}, expected a dict")
        obs = obs or {}
        step_goal = goal_text(obs, episode_dir) if obs else ""
        goal = goal or step_goal
        axtree = field(obs, "axtree_txt")
        if not isinstance(axtree, str):
            axtree = flatten_axtree(field(obs, "axtree_object"))
        focused = field(obs, "focused_element_bid")
        agent_info = field(info, "agent_info")
        think = field(agent_info, "think")
        action = field(info, "action")
        steps.append(
            {
                "step": i,
                "obs": {
                    "goal": step_goal,
                    "url": text(field(obs, "url")),
                    "axtree_txt": axtree,
                    "focused_element_bid": text(focused) if focused not in (None, "") and not isinstance(focused, StandIn) else None,
                    "last_action": text(field(obs, "last_action")),
                    "last_action_error": text(field(obs, "last_action_error")),
                },
                "think": text(think) if think is not None and not isinstance(think, StandIn) else None,
                "action": text(action) if action is not None and not isinstance(action, StandIn) else None,
                "reward": number(field(info, "reward")),
                "terminated": flag(field(info, "terminated")),
                "truncated": flag(field(info, "truncated")),
            }
        )

    cum_reward = number(summary.get("cum_reward"), default=sum(s["reward"] for s in steps))
    n_steps = summary.get("n_steps")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 0:
        n_steps = sum(1 for s in steps if s["action"] is not None)
    err = summary.get("err_msg")
    return {
        "task_name": task_name,
        "category": args.category if args.category is not None else infer_category(task_name),
        "seed": seed,
        "goal": goal,
        "agent": {"model_name": model_name, "agent_name": agent_name},
        "success": cum_reward >= args.success_threshold,
        "cum_reward": cum_reward,
        "n_steps": n_steps,
        "err_msg": text(err) if err is not None else None,
        "steps": steps,
    }


# ---------------------------------------------------------------------------------------------
# Output


def open_output(path):
    """(binary file object, final path, temporary path): written to a temporary file that is
    renamed into place at the end, so a half-written output never looks complete."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    raw = open(tmp, "wb")
    if path.endswith(".gz"):
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw), raw, tmp
    if path.endswith(".zst") or path.endswith(".zstd"):
        import zstandard  # checked in main()

        return zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False), raw, tmp
    return raw, raw, tmp


def find_episode_dirs(inputs):
    found = []
    for root in inputs:
        if not os.path.isdir(root):
            raise SystemExit(f"error: {root}: not a directory (give AgentLab experiment directories)")
        if is_episode_dir(root):
            found.append(root)
            continue
        for dirpath, dirnames, _ in os.walk(root):
            dirnames.sort()
            if is_episode_dir(dirpath):
                found.append(dirpath)
                dirnames[:] = []  # an episode directory holds no further episodes
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("inputs", nargs="+", help="episode directories, or directories searched recursively for them")
    p.add_argument("-o", "--output", required=True, help="output trace file: .jsonl, .jsonl.gz or .jsonl.zst")
    p.add_argument("--model-name", help="set agent.model_name (default: exp_args' agent_args.chat_model_args.model_name)")
    p.add_argument("--agent-name", help="set agent.agent_name (default: exp_args' agent_args.agent_name)")
    p.add_argument("--category", help="set the category of every episode (default: inferred from the task name)")
    p.add_argument("--success-threshold", type=float, default=1.0, help="an episode is a success when cum_reward >= this (default: 1.0)")
    p.add_argument("--strict", action="store_true", help="fail (exit 1, no output) if any episode directory cannot be converted")
    args = p.parse_args(argv)

    if args.output.endswith((".zst", ".zstd")):
        try:
            import zstandard  # noqa: F401
        except ImportError:
            print(f"error: {args.output}: writing .zst needs the `zstandard` Python module (pip install zstandard); or write .jsonl.gz instead", file=sys.stderr)
            return 2

    dirs = find_episode_dirs(args.inputs)
    if not dirs:
        print(f"error: no AgentLab episode directories (with step_N.pkl.gz or summary_info.json) under {', '.join(args.inputs)}", file=sys.stderr)
        return 1

    episodes, skipped = [], []
    for d in dirs:
        try:
            episodes.append(convert_episode(d, args))
        except Skip as e:
            skipped.append((d, str(e)))
        except Exception as e:  # a pickle of an unexpected shape: report it, keep going
            skipped.append((d, f"unexpected {type(e).__name__}: {e}"))
    for d, why in skipped:
        print(f"skipped {d}: {why}", file=sys.stderr)
    if args.strict and skipped:
        print(f"error: {len(skipped)} episode director{'y' if len(skipped) == 1 else 'ies'} could not be converted (--strict); nothing written", file=sys.stderr)
        return 1
    if not episodes:
        print("error: no episode could be converted; nothing written", file=sys.stderr)
        return 1

    out, raw, tmp = open_output(args.output)
    try:
        for e in episodes:
            out.write(json.dumps(e, ensure_ascii=False, allow_nan=False).encode("utf-8"))
            out.write(b"\n")
        if out is not raw:
            out.close()
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()
        os.replace(tmp, args.output)
    except BaseException:
        raw.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    n_steps = sum(len(e["steps"]) for e in episodes)
    print(f"wrote {len(episodes)} episodes ({n_steps} steps) to {args.output}; skipped {len(skipped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
