//! tools/agentlab_to_jsonl.py on a synthetic AgentLab experiment directory: the pickles are
//! written by Python with classes whose modules (agentlab…, browsergym…, numpy) are not
//! installed, so the converter has to use its stand-ins; the output is read back with
//! `agentmerge_traces::read_episodes` and every field is checked.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use agentmerge_traces::{read_episodes, AgentInfo, Episode, Observation, OnBadLine, Step};

/// Writes the experiment under argv[1]. Fake `numpy`, `agentlab` and `browsergym` modules are
/// registered only while pickling; the converter runs in another process without them.
const FIXTURE: &str = r#"
import dataclasses, gzip, json, os, pickle, struct, sys, types

root = sys.argv[1]

def module(name):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    return sys.modules[name]

def place(mod, obj):
    obj.__module__ = mod
    setattr(module(mod), obj.__name__, obj)
    return obj

# numpy, as far as pickling goes: dtype, arrays via _reconstruct, scalars via scalar().
class dtype:
    def __init__(self, code, align=False, copy=True):
        self.code = code
    def __reduce__(self):
        return (dtype, (self.code, False, True), (3, "<", None, None, None, -1, -1, 0))
    def __setstate__(self, state):
        pass
place("numpy", dtype)

class ndarray:
    def __init__(self, *a):
        self.shape, self.data = (2, 2, 3), bytes(range(12))
    def __reduce__(self):
        return (_reconstruct, (ndarray, (0,), b"b"), (1, self.shape, dtype("u1"), False, self.data))
    def __setstate__(self, state):
        pass
place("numpy", ndarray)

def _reconstruct(cls, shape, code):
    return cls()
place("numpy.core.multiarray", _reconstruct)

def scalar(dt, data):
    return None
place("numpy.core.multiarray", scalar)

class float64(float):
    def __reduce__(self):
        return (scalar, (dtype("f8"), struct.pack("<d", float(self))))
class int64(int):
    def __reduce__(self):
        return (scalar, (dtype("i8"), struct.pack("<q", int(self))))

# AgentLab and BrowserGym classes.
@dataclasses.dataclass
class StepTimestamps:
    env_start: float = 0.0
place("agentlab.experiments.loop", StepTimestamps)

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
    profiling: StepTimestamps = dataclasses.field(default_factory=StepTimestamps)
    task_info: dict = None
place("agentlab.experiments.loop", StepInfo)

@dataclasses.dataclass
class AgentInfo:
    think: str = None
    chat_messages: list = None
    stats: dict = dataclasses.field(default_factory=dict)
    extra_info: dict = None
place("browsergym.experiments.agent", AgentInfo)

class Discussion(list):  # a list subclass: rebuilt with append/extend
    pass
place("agentlab.llm.llm_utils", Discussion)

class TaskInfo(dict):  # a dict subclass: rebuilt with item assignment
    pass
place("agentlab.experiments.loop", TaskInfo)

class Slotted:  # state as (None, slots)
    __slots__ = ("a", "b")
    def __init__(self):
        self.a, self.b = 1, "two"
place("browsergym.core.chat", Slotted)

@dataclasses.dataclass
class EnvArgs:
    task_name: str
    task_seed: int = None
    max_steps: int = 15
place("agentlab.experiments.loop", EnvArgs)

@dataclasses.dataclass
class OpenAIModelArgs:
    model_name: str
    temperature: float = 0.1
place("agentlab.llm.chat_api", OpenAIModelArgs)

@dataclasses.dataclass
class GenericAgentArgs:
    chat_model_args: object = None
    flags: object = None
    agent_name: str = None
place("agentlab.agents.generic_agent.generic_agent", GenericAgentArgs)

@dataclasses.dataclass
class ExpArgs:
    agent_args: object
    env_args: object
    exp_dir: str = None
    err_msg: str = None
place("agentlab.experiments.loop", ExpArgs)

def write_step(d, info, protocol=pickle.DEFAULT_PROTOCOL):
    with gzip.open(os.path.join(d, f"step_{info.step}.pkl.gz"), "wb") as f:
        pickle.dump(info, f, protocol=protocol)

def write_summary(d, **kw):
    with open(os.path.join(d, "summary_info.json"), "w") as f:
        json.dump(kw, f, indent=4)

def discussion(*texts):
    d = Discussion()
    d.extend({"role": "user", "content": t} for t in texts)
    return d

# Episode A: a successful CoT episode with exp_args.pkl; axtree_txt given; numpy screenshots,
# numpy scalars, agent_info once as a dict and once as an AgentInfo object.
a = os.path.join(root, "study1", "2024-06-01_10-00-00_GenericAgent-gpt-4o_on_workarena.servicenow.create-incident_17")
os.makedirs(a)
exp = ExpArgs(
    agent_args=GenericAgentArgs(chat_model_args=OpenAIModelArgs(model_name="openai/gpt-4o-2024-05-13"), flags={"use_thinking": True}, agent_name="GenericAgent-gpt-4o"),
    env_args=EnvArgs(task_name="workarena.servicenow.create-incident", task_seed=int64(17)),
)
with open(os.path.join(a, "exp_args.pkl"), "wb") as f:
    pickle.dump(exp, f, protocol=0)  # the oldest protocol: copyreg._reconstructor, _codecs
tree0 = "RootWebArea 'Create Incident'\n\t[a12] button 'New'\n\t[b3] textbox 'Short description'"
goal = "Create a new incident with short description \"Printer jam\""
obs0 = {"goal": goal, "goal_object": None, "url": "https://dev.service-now.com/incident.do", "axtree_txt": tree0,
        "axtree_object": {"nodes": []}, "focused_element_bid": "", "last_action": "", "last_action_error": "",
        "chat_messages": discussion("hi"), "screenshot": ndarray(), "elapsed_time": ndarray(), "open_pages_urls": ["https://dev.service-now.com"], "extra": Slotted()}
write_step(a, StepInfo(step=0, obs=obs0, reward=0, raw_reward=0, terminated=False, truncated=False, action="click('a12')",
                       agent_info={"think": "The form is empty.\nI click New.", "chat_messages": discussion("p", "r"), "stats": {"n_tokens": int64(5)}},
                       stats={"step_elapsed": float64(1.5)}, task_info=TaskInfo(level="l1")))
obs1 = dict(obs0, axtree_txt=tree0 + "\n\t[c9] button 'Submit'", focused_element_bid="b3", last_action="click('a12')",
            last_action_error="TimeoutError: element a12 did not respond \u00e9", url="https://dev.service-now.com/incident.do?sys_id=-1")
write_step(a, StepInfo(step=1, obs=obs1, reward=float64(0.0), raw_reward=None, terminated=False, truncated=False,
                       action="fill('b3', \"Printer jam\")",
                       agent_info=AgentInfo(think="Type the description.", chat_messages=discussion("x"), stats={}, extra_info=None)))
obs2 = dict(obs1, last_action="fill('b3', \"Printer jam\")", last_action_error="", focused_element_bid=None)
write_step(a, StepInfo(step=2, obs=obs2, reward=float64(1.0), raw_reward=1.0, terminated=True, truncated=False, action=None, agent_info={}))
write_summary(a, n_steps=2, cum_reward=1.0, cum_raw_reward=1.0, err_msg=None, stack_trace=None, terminated=True, truncated=False)

# Episode B: no exp_args.pkl (task and seed from the directory name), only axtree_object,
# the goal in goal_object.pkl.gz, no thoughts, an error message, not a success.
b = os.path.join(root, "study1", "2024-06-02_09-30-00_GenericAgent-llama_on_workarena.servicenow.sort-user-list_3_1")
os.makedirs(b)
def node(i, role, name=None, children=(), bid=None, value=None, props=()):
    n = {"nodeId": i, "role": {"type": "role", "value": role}, "childIds": list(children)}
    if name is not None:
        n["name"] = {"type": "computedString", "value": name}
    if bid is not None:
        n["browsergym_id"] = bid
    if value is not None:
        n["value"] = {"type": "string", "value": value}
    n["properties"] = [{"name": k, "value": {"type": "boolean", "value": v}} for k, v in props]
    return n
axtree_object = {"nodes": [
    node("1", "RootWebArea", "Users", children=["2", "3", "6"]),
    node("2", "generic", children=["4"]),
    node("3", "textbox", "Name", children=["5", "7"], bid="a7", value="Bob"),
    node("4", "button", "Sort", bid="a5", props=[("focusable", True), ("expanded", False), ("required", True)]),
    node("5", "StaticText", "Name"),
    node("6", "LineBreak", "\n"),
    node("7", "StaticText", "hello"),
]}
with gzip.open(os.path.join(b, "goal_object.pkl.gz"), "wb") as f:
    pickle.dump([{"type": "text", "text": "Sort the users by name."}, {"type": "image_url", "image_url": "data:..."}], f)
obs_b = {"goal_object": None, "url": "https://dev.service-now.com/sys_user_list.do", "axtree_object": axtree_object,
         "focused_element_bid": "a5", "last_action": "", "last_action_error": "", "screenshot": ndarray()}
write_step(b, StepInfo(step=0, obs=obs_b, reward=0.0, terminated=False, truncated=False, action="click('a5')", agent_info={"think": None}), protocol=2)
write_step(b, StepInfo(step=1, obs=dict(obs_b, last_action="click('a5')"), reward=0.0, terminated=False, truncated=True, action=None), protocol=2)
write_summary(b, n_steps=1, cum_reward=0.0, err_msg="Exception uncaught by agent or environment in task x.\nValueError:\nboom", terminated=False, truncated=True)

# Broken episodes: a corrupt step pickle, and an episode without summary_info.json.
c = os.path.join(root, "study2", "2024-06-03_00-00-00_A_on_miniarena.form.create_user_5")
os.makedirs(c)
with open(os.path.join(c, "step_0.pkl.gz"), "wb") as f:
    f.write(b"not gzip")
write_summary(c, n_steps=0, cum_reward=0.0, err_msg=None)
d = os.path.join(root, "study2", "2024-06-03_00-00-01_A_on_miniarena.form.create_user_6")
os.makedirs(d)
write_step(d, StepInfo(step=0, obs={}, action="noop()"))
"#;

fn converter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("tools/agentlab_to_jsonl.py")
}

fn python(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 is needed for this test (the converter is a Python script); install Python 3")
}

fn obs(goal: &str, url: &str, axtree: &str, focused: Option<&str>, last_action: &str, err: &str) -> Observation {
    Observation {
        goal: goal.into(),
        url: url.into(),
        axtree_txt: axtree.into(),
        focused_element_bid: focused.map(str::to_string),
        last_action: last_action.into(),
        last_action_error: err.into(),
    }
}

fn expected_a(model_name: &str, agent_name: &str, category: &str) -> Episode {
    let goal = "Create a new incident with short description \"Printer jam\"";
    let tree0 = "RootWebArea 'Create Incident'\n\t[a12] button 'New'\n\t[b3] textbox 'Short description'";
    let tree1 = format!("{tree0}\n\t[c9] button 'Submit'");
    let url1 = "https://dev.service-now.com/incident.do?sys_id=-1";
    Episode {
        task_name: "workarena.servicenow.create-incident".into(),
        category: category.into(),
        seed: 17,
        page_size: None,
        goal: goal.into(),
        agent: AgentInfo { model_name: model_name.into(), agent_name: agent_name.into() },
        success: true,
        cum_reward: 1.0,
        n_steps: 2,
        err_msg: None,
        steps: vec![
            Step {
                step: 0,
                obs: obs(goal, "https://dev.service-now.com/incident.do", tree0, None, "", ""),
                think: Some("The form is empty.\nI click New.".into()),
                action: Some("click('a12')".into()),
                reward: 0.0,
                terminated: false,
                truncated: false,
            },
            Step {
                step: 1,
                obs: obs(goal, url1, &tree1, Some("b3"), "click('a12')", "TimeoutError: element a12 did not respond é"),
                think: Some("Type the description.".into()),
                action: Some("fill('b3', \"Printer jam\")".into()),
                reward: 0.0,
                terminated: false,
                truncated: false,
            },
            Step {
                step: 2,
                obs: obs(goal, url1, &tree1, None, "fill('b3', \"Printer jam\")", ""),
                think: None,
                action: None,
                reward: 1.0,
                terminated: true,
                truncated: false,
            },
        ],
    }
}

fn expected_b() -> Episode {
    let goal = "Sort the users by name.";
    // BrowserGym's flattening: skipped nodes (no name, LineBreak, redundant StaticText) do not
    // indent their children; ignored properties (focusable) are left out.
    let tree = "RootWebArea 'Users'\n\t[a5] button 'Sort', expanded=False, required\n\t[a7] textbox 'Name' value='Bob'\n\t\tStaticText 'hello'";
    let url = "https://dev.service-now.com/sys_user_list.do";
    Episode {
        task_name: "workarena.servicenow.sort-user-list".into(),
        category: "list_sort".into(),
        seed: 3,
        page_size: None,
        goal: goal.into(),
        agent: AgentInfo::default(),
        success: false,
        cum_reward: 0.0,
        n_steps: 1,
        err_msg: Some("Exception uncaught by agent or environment in task x.\nValueError:\nboom".into()),
        steps: vec![
            Step { step: 0, obs: obs(goal, url, tree, Some("a5"), "", ""), think: None, action: Some("click('a5')".into()), ..Default::default() },
            Step { step: 1, obs: obs(goal, url, tree, Some("a5"), "click('a5')", ""), think: None, action: None, truncated: true, ..Default::default() },
        ],
    }
}

fn by_task<'a>(eps: &'a [Episode], task: &str) -> &'a Episode {
    eps.iter().find(|e| e.task_name == task).unwrap_or_else(|| panic!("no episode of {task} in {:?}", eps.iter().map(|e| &e.task_name).collect::<Vec<_>>()))
}

#[test]
fn converts_agentlab_pickles_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("results");
    let fixture = dir.path().join("fixture.py");
    std::fs::write(&fixture, FIXTURE).unwrap();
    let o = python(&[fixture.as_os_str(), exp.as_os_str()]);
    assert!(o.status.success(), "fixture script failed:\n{}", String::from_utf8_lossy(&o.stderr));

    // The whole results directory, gzip output.
    let out = dir.path().join("traces.jsonl.gz");
    let o = python(&[converter().as_os_str(), exp.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "converter failed:\n{stderr}");
    // Broken episodes are reported with their directory and the reason.
    assert!(stderr.contains("create_user_5: ") && stderr.contains("step_0.pkl.gz: cannot unpickle"), "{stderr}");
    assert!(stderr.contains("create_user_6: no summary_info.json"), "{stderr}");
    assert!(stderr.contains("wrote 2 episodes (5 steps)") && stderr.contains("skipped 2"), "{stderr}");

    let (eps, report) = read_episodes(&out, OnBadLine::Fail).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(eps.len(), 2);
    assert_eq!(*by_task(&eps, "workarena.servicenow.create-incident"), expected_a("openai/gpt-4o-2024-05-13", "GenericAgent-gpt-4o", "form"));
    assert_eq!(*by_task(&eps, "workarena.servicenow.sort-user-list"), expected_b());

    // One episode directory, plain output, overrides.
    let ep_dir = std::fs::read_dir(exp.join("study1")).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("create-incident")).unwrap();
    let out = dir.path().join("one.jsonl");
    let o = python(&[
        converter().as_os_str(),
        ep_dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--model-name".as_ref(),
        "expert-70b".as_ref(),
        "--agent-name".as_ref(),
        "expert-cot".as_ref(),
        "--category".as_ref(),
        "custom".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (eps, _) = read_episodes(&out, OnBadLine::Fail).unwrap();
    assert_eq!(eps, vec![expected_a("expert-70b", "expert-cot", "custom")]);

    // --strict refuses a run with broken episodes and writes nothing.
    let out = dir.path().join("strict.jsonl");
    let o = python(&[converter().as_os_str(), exp.as_os_str(), "-o".as_ref(), out.as_os_str(), "--strict".as_ref()]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists());

    // Nothing to convert: a clear error.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = python(&[converter().as_os_str(), empty.as_os_str(), "-o".as_ref(), dir.path().join("x.jsonl").as_os_str()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no AgentLab episode directories"));
}

#[test]
fn zstd_output_needs_the_zstandard_module() {
    let has_zstd = python(&["-c".as_ref(), "import zstandard".as_ref()]).status.success();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("results");
    let fixture = dir.path().join("fixture.py");
    std::fs::write(&fixture, FIXTURE).unwrap();
    assert!(python(&[fixture.as_os_str(), exp.as_os_str()]).status.success());
    let out = dir.path().join("t.jsonl.zst");
    let o = python(&[converter().as_os_str(), exp.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    if has_zstd {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(read_episodes(&out, OnBadLine::Fail).unwrap().0.len(), 2);
    } else {
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("zstandard") && err.contains(".jsonl.gz"), "{err}");
        assert!(!out.exists());
    }
}
