//! The `#[repr(C)]` types that host and plugins exchange, checked by `abi_stable` at load time.
//!
//! Plugin authors never touch these directly: [`crate::export_plugin!`] builds the root module
//! and [`crate::Value`] / [`crate::Ctx`] wrap the rest. Structured data that only needs to be
//! *read* on the other side (manifests, configs, metrics) crosses as JSON text, so adding a field
//! there does not change the binary layout; values that must be shared without copying (tensors)
//! cross as pointers with an owner and release callback.

use std::ffi::c_void;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString, RVec},
    StableAbi,
};

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's manifest as JSON (see [`crate::Manifest`]).
    pub manifest: extern "C" fn() -> RResult<RString, RString>,
    /// Validates a node's config (JSON) for `kind`; returns the resolved config (defaults
    /// filled in) as JSON, or a JSON [`crate::ConfigError`].
    pub validate: extern "C" fn(kind: RStr<'_>, config: RStr<'_>) -> RResult<RString, RString>,
    /// Runs one node: `kind`, resolved config JSON, host services, inputs by port.
    #[sabi(last_prefix_field)]
    pub run: extern "C" fn(kind: RStr<'_>, config: RStr<'_>, ctx: &HostCtx, inputs: RVec<FfiPort>) -> RResult<RVec<FfiPort>, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "agentmerge_plugin";
    const NAME: &'static str = "agentmerge_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Services the host hands to every node call. `data` is the host's private state for this
/// call; it stays valid until `run` returns, and the callbacks may be called from any thread.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostCtx {
    /// The node's id in the pipeline (with its sweep label, if any).
    pub node_id: RString,
    /// The directory where the node writes its files; the host moves it into the store when
    /// the node succeeds.
    pub out_dir: RString,
    /// A directory private to the node's cache key that outlives a failed, cancelled or killed
    /// run (`out_dir` does not); the host removes it once the node's outputs are committed.
    pub work_dir: RString,
    /// The memo directory of the node's plugin and kind (`STORE/memo/<hash>/`, the hash of the
    /// plugin's identity — name, version, library digest — and the kind), shared by every node
    /// of that kind across runs: per-item results a node may reuse (see [`crate::memo`]). It
    /// may not exist yet (the first write creates it). Empty when the run must not reuse
    /// anything (`--no-cache`, or `--force` on this node): no memo.
    pub memo_dir: RString,
    /// The run's seed, mixed with the node id so each node has its own stream.
    pub seed: u64,
    /// The most verbose log level the host shows (0 error .. 4 trace).
    pub max_log_level: u8,
    /// Threads the node may use (0: the machine's cores); the SDK sizes the node's rayon pool.
    pub threads: u32,
    /// GPU device indices assigned to the node, comma-separated; empty for none assigned.
    pub devices: RString,
    pub data: *const c_void,
    /// Emits a log record. Needs no `data`, so it may be called after `run` returned (from a
    /// thread the plugin left running): `node` names the origin.
    pub log: extern "C" fn(level: u8, node: RStr<'_>, target: RStr<'_>, message: RStr<'_>),
    /// Reports progress: `done` of `total` units (total 0 = unknown), with a short message.
    pub progress: extern "C" fn(data: *const c_void, done: u64, total: u64, message: RStr<'_>),
    /// True once the user asked to stop: a long node should return soon after.
    pub cancelled: extern "C" fn(data: *const c_void) -> bool,
}

// SAFETY: the host guarantees `data` points to `Sync` state that outlives the call.
unsafe impl Send for HostCtx {}
unsafe impl Sync for HostCtx {}

/// The values of one port: one element for a plain port, any number for a list port.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiPort {
    pub name: RString,
    pub values: RVec<FfiValue>,
}

/// A value crossing the boundary. Paths are UTF-8 absolute paths.
#[repr(C, u8)]
#[derive(StableAbi)]
pub enum FfiValue {
    Tensor(FfiTensor),
    /// A Hugging Face checkpoint directory.
    Model(RString),
    /// A dataset file or directory with its schema name.
    Dataset {
        schema: RString,
        path: RString,
    },
    /// A JSON object of metrics.
    Metrics(RString),
    Scalar(f64),
    /// Any JSON value.
    Json(RString),
}

/// A tensor whose bytes stay owned by whoever made them; `release` is called exactly once per
/// `retain` plus once for the original.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiTensor {
    pub dtype: u8,
    pub shape: RVec<u64>,
    pub data: *const u8,
    pub len: usize,
    pub owner: *const c_void,
    pub retain: unsafe extern "C" fn(*const c_void),
    pub release: unsafe extern "C" fn(*const c_void),
}

// SAFETY: owners are required to be Send + Sync (see `crate::tensor::Tensor::from_owner`).
unsafe impl Send for FfiTensor {}
unsafe impl Sync for FfiTensor {}
