//! The `merge` plugin: one node kind per merge method (models in, merged model out), the
//! AgentMerge recipe as a single node, and `mergekit` for recipes written as mergekit YAML.
//! All of them run the SDK's streaming engine (`agentmerge-merge`); this crate only maps
//! node configs and ports onto a merge plan.

mod agentmerge;
mod method;
mod mergekit;
mod run;

pub use agentmerge::AgentMerge;
pub use mergekit::Mergekit;
pub use method::*;

agentmerge_sdk::export_plugin! {
    name: "merge",
    kinds: [
        Linear, TaskArithmetic, Ties, DareLinear, DareTies, Breadcrumbs, BreadcrumbsTies,
        Della, DellaLinear, Slerp, Nuslerp, ModelStock, Passthrough, AgentMerge, Mergekit,
    ],
}
