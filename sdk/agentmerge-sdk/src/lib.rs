//! The AgentMerge plugin SDK: everything a plugin author depends on.
//!
//! A plugin library is a `cdylib` that calls [`export_plugin!`] once with the node kinds it
//! offers. Each node kind is a config struct (deserialized from the pipeline's `with:` block)
//! that implements [`NodeKind`]: its ports, its docs, and a `run` function that turns
//! [`Inputs`] into [`Outputs`] using the host services in [`Ctx`].
//!
//! ```ignore
//! use agentmerge_sdk::prelude::*;
//!
//! /// Adds a constant to a scalar.
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct AddConst { value: f64 }
//!
//! impl NodeKind for AddConst {
//!     const NAME: &'static str = "add_const";
//!     const DOC: &'static str = "Adds `value` to the input scalar.";
//!     fn ports() -> Ports { Ports::new().input("x", PortType::Scalar, "a number").output("y", PortType::Scalar, "x + value") }
//!     fn run(&self, _ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
//!         Ok(Outputs::new().with("y", inputs.scalar("x")? + self.value))
//!     }
//! }
//! export_plugin! { name: "example", kinds: [AddConst] }
//! ```
//!
//! The modules, in the order a newcomer may want to read them:
//! - [`node`]: the [`NodeKind`] trait, [`Inputs`], [`Outputs`] and the host services [`Ctx`];
//! - [`value`] and [`tensor`]: the values that cross the plugin boundary;
//! - [`memo`]: per-item results kept across runs ([`Ctx::memo`]), and content hashes for their
//!   keys;
//! - [`manifest`]: what a plugin publishes about itself (kinds, ports, config schemas);
//! - [`abi`]: the `#[repr(C)]` types the host and plugins actually exchange;
//! - [`export`]: the glue behind [`export_plugin!`] (panic catching, log forwarding).

pub mod abi;
pub mod export;
pub mod manifest;
pub mod memo;
pub mod node;
pub mod tensor;
pub mod value;

pub use manifest::{KindManifest, Manifest, PortSpec, PortType, Resources};
pub use memo::Memo;
pub use node::{ConfigError, Ctx, Inputs, NodeKind, Outputs, Ports};
pub use tensor::{DType, Tensor};
pub use value::Value;

/// The version of this SDK, as written in its Cargo.toml. A plugin records the SDK it was built
/// against; the host refuses plugins whose SDK is not semver-compatible with its own.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// True when a plugin built against SDK `plugin` can be loaded by a host built against SDK
/// `host`: same major version, and for 0.x versions the same minor version (Cargo's rule).
pub fn sdk_compatible(host: &str, plugin: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
    match (parts(host), parts(plugin)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// What plugin authors import: `use agentmerge_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::export_plugin;
    pub use crate::{ConfigError, Ctx, DType, Inputs, NodeKind, Outputs, PortType, Ports, Tensor, Value};
    pub use anyhow::{anyhow, bail, Context as _};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Re-exports used by the [`export_plugin!`] macro; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::*;
    pub use abi_stable;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_rule() {
        assert!(sdk_compatible("0.1.0", "0.1.7"));
        assert!(!sdk_compatible("0.1.0", "0.2.0"));
        assert!(sdk_compatible("1.2.0", "1.0.0"));
        assert!(!sdk_compatible("1.2.0", "2.0.0"));
        assert!(!sdk_compatible("0.1.0", "garbage"));
    }

    #[test]
    fn loader_symbol_name_matches_abi_stable() {
        assert_eq!(export::ROOT_MODULE_LOADER_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
