//! The `report/paper` config: which evaluate, likelihood and forgetting nodes stand behind
//! each method of the paper, and which tasks form the cross-task split.

use agentmerge_sdk::prelude::*;

/// The models the paper compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Instruct,
    Agent,
    InstructFt,
    Soup,
    SoupUniform,
    AgentMerge,
}

impl Method {
    pub const ALL: [Method; 6] = [Method::Instruct, Method::Agent, Method::InstructFt, Method::Soup, Method::SoupUniform, Method::AgentMerge];

    /// The config key (`instruct_ft`), also used in CSV and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Method::Instruct => "instruct",
            Method::Agent => "agent",
            Method::InstructFt => "instruct_ft",
            Method::Soup => "soup",
            Method::SoupUniform => "soup_uniform",
            Method::AgentMerge => "agentmerge",
        }
    }

    /// The name in tables and legends.
    pub fn title(self) -> &'static str {
        match self {
            Method::Instruct => "Instruct",
            Method::Agent => "Agent",
            Method::InstructFt => "Instruct-FT",
            Method::Soup => "Model soup",
            Method::SoupUniform => "Uniform soup",
            Method::AgentMerge => "AgentMerge",
        }
    }
}

/// One entry per method; every one may be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PerMethod_{T}")]
pub struct PerMethod<T> {
    /// The instruct model alone (a context row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruct: Option<T>,
    /// The agent model: the base model fine-tuned on agent traces, per learning rate (context rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<T>,
    /// The instruct model fine-tuned on agent traces, per learning rate (checkpoint rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruct_ft: Option<T>,
    /// The model soup, per learning rate (or one, unlabelled: then a context row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soup: Option<T>,
    /// A second soup variant, e.g. uniform over every model (a context row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soup_uniform: Option<T>,
    /// AgentMerge, instruct + λ·(agent − base), per learning rate × λ (checkpoint rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentmerge: Option<T>,
}

impl<T> PerMethod<T> {
    pub fn get(&self, m: Method) -> Option<&T> {
        match m {
            Method::Instruct => self.instruct.as_ref(),
            Method::Agent => self.agent.as_ref(),
            Method::InstructFt => self.instruct_ft.as_ref(),
            Method::Soup => self.soup.as_ref(),
            Method::SoupUniform => self.soup_uniform.as_ref(),
            Method::AgentMerge => self.agentmerge.as_ref(),
        }
    }

    /// The methods that are set, in [`Method::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Method, &T)> {
        Method::ALL.into_iter().filter_map(|m| self.get(m).map(|t| (m, t)))
    }
}

/// The likelihood node ids of one method, one per split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitIds {
    /// The likelihood node on inter-task expert trajectories (held-out instances of training tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter: Option<String>,
    /// The likelihood node on cross-task expert trajectories (held-out tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross: Option<String>,
}

/// Evaluate nodes on the validation split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// The evaluate node of AgentMerge on the validation split, swept like `methods.agentmerge`
    /// (per learning rate × λ). It alone chooses λ for each learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentmerge: Option<String>,
}

/// The paper's Table 1 and Figures 2–3.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Paper {
    /// Categories or task names (e.g. `dashboard`, `miniarena.menu.impersonate_user`) whose
    /// tasks form the cross-task split; every other task is inter-task. Empty: everything is
    /// inter-task.
    #[serde(default)]
    pub cross_task: Vec<String>,
    /// The evaluate node ids (without `[labels]`) on the test split behind each method, any
    /// of `instruct`, `agent` (per LR), `instruct_ft` (per LR), `soup` (per LR, or one),
    /// `soup_uniform` and `agentmerge` (per LR × λ), e.g. `{instruct_ft: ev_ift, agentmerge: ev_am}`.
    #[serde(default)]
    pub methods: PerMethod<String>,
    /// Evaluate node ids on the validation split, used only to choose λ: `{agentmerge: ID}`,
    /// swept like `methods.agentmerge`. Per LR, the λ with the highest validation success wins
    /// (all tasks pooled, final checkpoint; ties: higher exact step accuracy, then smaller λ).
    /// Without it, λ = 1 (else the smallest) is used and the report says it was not validated.
    #[serde(default)]
    pub validation: Validation,
    /// Likelihood node ids of held-out expert trajectories per method (same keys as
    /// `methods`), each `{inter: ID, cross: ID}` (either may be left out): Figure 2's bottom
    /// row and a table.
    #[serde(default)]
    pub likelihood: PerMethod<SplitIds>,
    /// Forgetting node ids per method (same keys as `methods`): a table of the drop in
    /// held-out log-likelihood, before − after, in nats per token.
    #[serde(default)]
    pub forgetting: PerMethod<String>,
    /// The report's title (default: the paper's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The sweep label that holds the fine-tuning learning rate.
    #[serde(default = "default_lr_label")]
    pub lr_label: String,
    /// The sweep label that holds AgentMerge's λ.
    #[serde(default = "default_lambda_label")]
    pub lambda_label: String,
}

fn default_lr_label() -> String {
    "lr".into()
}

fn default_lambda_label() -> String {
    "lambda".into()
}

/// What a configured node id stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Test-split evaluation of a method.
    Test(Method),
    /// Validation-split evaluation of AgentMerge.
    Validation,
    Likelihood(Method, Split),
    Forgetting(Method),
}

/// The two generalization splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Inter,
    Cross,
}

impl Split {
    pub fn key(self) -> &'static str {
        match self {
            Split::Inter => "inter",
            Split::Cross => "cross",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Split::Inter => "inter-task",
            Split::Cross => "cross-task",
        }
    }
}

impl Role {
    /// The node kind whose metrics this role expects.
    pub fn kind(self) -> &'static str {
        match self {
            Role::Test(_) | Role::Validation => "evaluate",
            Role::Likelihood(..) => "likelihood",
            Role::Forgetting(_) => "forgetting",
        }
    }
}

impl Paper {
    /// Every configured node id with its role and the config field that names it.
    pub fn roles(&self) -> Vec<(String, &str, Role)> {
        let mut out: Vec<(String, &str, Role)> = Vec::new();
        for (m, id) in self.methods.iter() {
            out.push((format!("methods.{}", m.key()), id, Role::Test(m)));
        }
        if let Some(id) = &self.validation.agentmerge {
            out.push(("validation.agentmerge".into(), id, Role::Validation));
        }
        for (m, ids) in self.likelihood.iter() {
            for (split, id) in [(Split::Inter, &ids.inter), (Split::Cross, &ids.cross)] {
                if let Some(id) = id {
                    out.push((format!("likelihood.{}.{}", m.key(), split.key()), id, Role::Likelihood(m, split)));
                }
            }
        }
        for (m, id) in self.forgetting.iter() {
            out.push((format!("forgetting.{}", m.key()), id, Role::Forgetting(m)));
        }
        out
    }

    /// The role of the node `base` (an id without labels), if it is configured.
    pub fn role_of(&self, base: &str) -> Option<Role> {
        self.roles().into_iter().find(|(_, id, _)| *id == base).map(|(_, _, r)| r)
    }

    /// Ids are plain node ids, each used once; at least one method is given.
    pub fn check(&self) -> Result<(), ConfigError> {
        let roles = self.roles();
        if self.methods.iter().next().is_none() {
            return Err(ConfigError::new("methods", "name at least one evaluate node, e.g. `methods: {instruct_ft: ev_ift, agentmerge: ev_am}`"));
        }
        for (i, (field, id, _)) in roles.iter().enumerate() {
            if id.trim().is_empty() {
                return Err(ConfigError::new(field.as_str(), "is empty; give a node id"));
            }
            if id.contains('[') || id.contains(']') {
                return Err(ConfigError::new(field.as_str(), format!("give the node id without sweep labels: `{}`", id.split('[').next().unwrap_or(id))));
            }
            if let Some((other, _, _)) = roles[..i].iter().find(|(_, o, _)| o == id) {
                return Err(ConfigError::new(field.as_str(), format!("node `{id}` is also named by `{other}`; each node has one role in the report")));
            }
        }
        for (field, label) in [("lr_label", &self.lr_label), ("lambda_label", &self.lambda_label)] {
            if label.trim().is_empty() {
                return Err(ConfigError::new(field, "is empty; give the sweep field's name"));
            }
        }
        if self.lr_label == self.lambda_label {
            return Err(ConfigError::new("lambda_label", "must differ from `lr_label`"));
        }
        if self.validation.agentmerge.is_some() && self.methods.agentmerge.is_none() {
            return Err(ConfigError::new("validation.agentmerge", "chooses λ for `methods.agentmerge`, which is not set"));
        }
        if let Some((m, _)) = self.likelihood.iter().find(|(_, ids)| ids.inter.is_none() && ids.cross.is_none()) {
            return Err(ConfigError::new(format!("likelihood.{}", m.key()), "give `inter`, `cross` or both"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper(v: serde_json::Value) -> Result<Paper, String> {
        let p: Paper = serde_json::from_value(v).map_err(|e| e.to_string())?;
        p.check().map_err(|e| e.to_string())?;
        Ok(p)
    }

    #[test]
    fn defaults_and_roles() {
        let p = paper(serde_json::json!({"methods": {"instruct_ft": "ev_ift", "agentmerge": "ev_am"}, "validation": {"agentmerge": "ev_am_val"},
            "likelihood": {"agentmerge": {"inter": "ll_am_i"}}}))
        .unwrap();
        assert_eq!((p.lr_label.as_str(), p.lambda_label.as_str()), ("lr", "lambda"));
        assert_eq!(p.role_of("ev_am"), Some(Role::Test(Method::AgentMerge)));
        assert_eq!(p.role_of("ev_am_val"), Some(Role::Validation));
        assert_eq!(p.role_of("ll_am_i"), Some(Role::Likelihood(Method::AgentMerge, Split::Inter)));
        assert_eq!(p.role_of("nope"), None);
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = paper(serde_json::json!({"methods": {"instruct_ft": "ev[lr=1]"}})).unwrap_err();
        assert!(e.contains("methods.instruct_ft") && e.contains("`ev`"), "{e}");
        let e = paper(serde_json::json!({"methods": {"instruct_ft": "ev", "soup": "ev"}})).unwrap_err();
        assert!(e.contains("methods.soup") && e.contains("methods.instruct_ft"), "{e}");
        let e = paper(serde_json::json!({"methods": {}})).unwrap_err();
        assert!(e.contains("methods"), "{e}");
        let e = paper(serde_json::json!({"methods": {"ift": "ev"}})).unwrap_err();
        assert!(e.contains("unknown field `ift`"), "{e}");
        let e = paper(serde_json::json!({"methods": {"instruct_ft": "ev"}, "validation": {"agentmerge": "v"}})).unwrap_err();
        assert!(e.contains("validation.agentmerge"), "{e}");
        let e = paper(serde_json::json!({"methods": {"instruct_ft": "ev"}, "likelihood": {"instruct_ft": {}}})).unwrap_err();
        assert!(e.contains("likelihood.instruct_ft"), "{e}");
    }
}
