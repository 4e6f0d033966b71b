//! The `merge` plugin: one node kind per merge method (models in, merged model out), the
//! AgentMerge recipe as a single node, and `mergekit` for recipes written as mergekit YAML.
//! All of them run the SDK's streaming engine (`agentmerge-merge`); this crate only names
//! the methods and maps the two special nodes' configs onto a merge plan.

mod agentmerge;
mod mergekit;
mod method;

pub use agentmerge::AgentMerge;
pub use mergekit::Mergekit;
pub use method::*;

use agentmerge_merge::node::StrategyNode as N;

agentmerge_sdk::export_plugin! {
    name: "merge",
    kinds: [
        N<Linear>, N<TaskArithmetic>, N<Ties>, N<DareLinear>, N<DareTies>, N<Breadcrumbs>,
        N<BreadcrumbsTies>, N<Della>, N<DellaLinear>, N<Slerp>, N<Nuslerp>, N<ModelStock>,
        N<Passthrough>, AgentMerge, Mergekit,
    ],
}
