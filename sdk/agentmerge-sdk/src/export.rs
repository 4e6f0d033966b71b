//! The glue behind [`crate::export_plugin!`]: the registry of a library's node kinds, the
//! `extern "C"` entry points (each one catches panics, so a bug in a node becomes that node's
//! error instead of aborting the host), and the bridge that forwards the plugin's `tracing`
//! events to the host (a cdylib has its own copy of `tracing`'s statics, invisible to the host).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::OnceLock,
};

use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString, RVec};
use serde_json::Value as Json;

use crate::{
    abi::{FfiPort, HostCtx},
    manifest::{KindManifest, Manifest},
    node::{parse_config, ConfigError, Ctx, Inputs, NodeKind},
    value::Value,
};

/// The symbol abi_stable looks up for a library's root module (checked by a unit test).
pub const ROOT_MODULE_LOADER_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// The symbol, read before anything else, that says which SDK a plugin was built against.
pub const SDK_VERSION_SYMBOL: &str = "agentmerge_plugin_sdk_version";

/// One node kind of a library, type-erased.
pub struct KindEntry {
    pub manifest: fn() -> KindManifest,
    pub validate: fn(&Json) -> Result<Json, ConfigError>,
    pub run: fn(&Json, &Ctx, Inputs) -> anyhow::Result<crate::Outputs>,
    pub name: &'static str,
}

impl KindEntry {
    pub fn of<T: NodeKind>() -> KindEntry {
        KindEntry {
            name: T::NAME,
            manifest: || {
                let ports = T::ports();
                KindManifest {
                    name: T::NAME.to_string(),
                    doc: T::DOC.to_string(),
                    inputs: ports.inputs,
                    outputs: ports.outputs,
                    config_schema: serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Json::Null),
                    resources: T::resources(),
                }
            },
            validate: |cfg| {
                let mut parsed: T = parse_config(cfg)?;
                parsed.resolve()?;
                serde_json::to_value(&parsed).map_err(|e| ConfigError::new("", e.to_string()))
            },
            run: |cfg, ctx, inputs| {
                let parsed: T = parse_config(cfg).map_err(|e| anyhow::anyhow!("bad config: {e}"))?;
                parsed.run(ctx, inputs)
            },
        }
    }
}

/// A library's name, version and kinds.
pub struct Registry {
    pub plugin: &'static str,
    pub version: &'static str,
    pub kinds: Vec<KindEntry>,
}

impl Registry {
    fn kind(&self, name: &str) -> Result<&KindEntry, String> {
        self.kinds.iter().find(|k| k.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.kinds.iter().map(|k| k.name).collect();
            format!("plugin `{}` has no node kind `{name}` (it has: {})", self.plugin, names.join(", "))
        })
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the panic hook.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic hook (which prints a backtrace to stderr) with one that only
/// records the location: the panic becomes the node's error, reported by the host.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_AT.with(|p| *p.borrow_mut() = at);
        }))
    });
}

/// Runs `f`, turning a panic into an error message that says where it happened. Call it on the
/// thread that runs `f`: the location is recorded per thread.
fn catch<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    install_panic_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let at = PANIC_AT.with(|a| a.borrow_mut().take()).map(|a| format!(" at {a}")).unwrap_or_default();
            Err(format!("{what} panicked{at}: {}", panic_message(p)))
        }
    }
}

/// [`catch`] as the ABI's result.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    match catch(what, f) {
        Ok(v) => ROk(v),
        Err(e) => RErr(e.into()),
    }
}

pub fn manifest(reg: &Registry) -> RResult<RString, RString> {
    guarded("manifest", || {
        let m = Manifest {
            plugin: reg.plugin.to_string(),
            version: reg.version.to_string(),
            sdk_version: crate::SDK_VERSION.to_string(),
            kinds: reg.kinds.iter().map(|k| (k.manifest)()).collect(),
        };
        serde_json::to_string(&m).map(RString::from).map_err(|e| e.to_string())
    })
}

pub fn validate(reg: &Registry, kind: RStr<'_>, config: RStr<'_>) -> RResult<RString, RString> {
    guarded("config validation", || {
        let cfg_err = |e: ConfigError| serde_json::to_string(&e).unwrap_or_else(|_| e.message.clone());
        let entry = reg.kind(kind.as_str()).map_err(|m| cfg_err(ConfigError::new("", m)))?;
        let cfg: Json = serde_json::from_str(config.as_str()).map_err(|e| cfg_err(ConfigError::new("", e.to_string())))?;
        let resolved = (entry.validate)(&cfg).map_err(cfg_err)?;
        Ok(RString::from(resolved.to_string()))
    })
}

pub fn run(reg: &Registry, kind: RStr<'_>, config: RStr<'_>, ctx: &HostCtx, inputs: RVec<FfiPort>) -> RResult<RVec<FfiPort>, RString> {
    install_log_bridge(ctx);
    let _current = CurrentNode::enter(ctx);
    guarded("node", || {
        let entry = reg.kind(kind.as_str())?;
        let cfg: Json = serde_json::from_str(config.as_str()).map_err(|e| e.to_string())?;
        let mut ports = BTreeMap::new();
        for p in inputs {
            let values = p.values.into_iter().map(Value::from_ffi).collect::<anyhow::Result<Vec<_>>>();
            ports.insert(p.name.into_string(), values.map_err(|e| format!("{e:#}"))?);
        }
        // The node's threads: a pool of the size the host gave it (0: rayon's default). The node
        // runs on one of the pool's threads, so a panic there is caught there, where its
        // location was recorded.
        let call = || {
            let _current = CurrentNode::enter(ctx);
            catch("node", || (entry.run)(&cfg, &Ctx::from_raw(ctx), Inputs::new(ports)).map_err(|e| format!("{e:#}")))
        };
        let outputs = match ctx.threads {
            0 => call(),
            n => rayon::ThreadPoolBuilder::new().num_threads(n as usize).build().map_err(|e| format!("a pool of {n} threads: {e}"))?.install(call),
        }?;
        Ok(outputs
            .into_ports()
            .into_iter()
            .map(|(name, values)| FfiPort { name: name.into(), values: values.into_iter().map(Value::into_ffi).collect() })
            .collect())
    })
}

// ---- log bridge -------------------------------------------------------------------------

type LogFn = extern "C" fn(u8, RStr<'_>, RStr<'_>, RStr<'_>);

struct Bridge {
    log: LogFn,
    max_level: u8,
}

static BRIDGE: OnceLock<Bridge> = OnceLock::new();

thread_local! {
    static NODE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Marks the current thread as running a node, so its log records carry the node's id.
struct CurrentNode;

impl CurrentNode {
    fn enter(ctx: &HostCtx) -> CurrentNode {
        NODE.with(|n| *n.borrow_mut() = Some(ctx.node_id.to_string()));
        CurrentNode
    }
}

impl Drop for CurrentNode {
    fn drop(&mut self) {
        NODE.with(|n| *n.borrow_mut() = None);
    }
}

fn level_code(l: &tracing::Level) -> u8 {
    match *l {
        tracing::Level::ERROR => 0,
        tracing::Level::WARN => 1,
        tracing::Level::INFO => 2,
        tracing::Level::DEBUG => 3,
        tracing::Level::TRACE => 4,
    }
}

/// A `tracing` subscriber living inside the plugin that hands every event to the host.
struct Forwarder;

impl tracing::Subscriber for Forwarder {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        BRIDGE.get().is_some_and(|b| level_code(meta.level()) <= b.max_level)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let Some(b) = BRIDGE.get() else { return };
        let mut msg = MessageVisitor(String::new());
        event.record(&mut msg);
        let meta = event.metadata();
        let node = NODE.with(|n| n.borrow().clone()).unwrap_or_default();
        (b.log)(level_code(meta.level()), RStr::from(node.as_str()), RStr::from(meta.target()), RStr::from(msg.0.as_str()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

fn install_log_bridge(ctx: &HostCtx) {
    if BRIDGE.set(Bridge { log: ctx.log, max_level: ctx.max_log_level }).is_ok() {
        // Fails only if the plugin installed its own subscriber, which is its choice.
        let _ = tracing::subscriber::set_global_default(Forwarder);
    }
}

/// Declares a plugin library: its name and node kinds. Call it once, at the crate root of a
/// `cdylib` crate.
///
/// ```ignore
/// agentmerge_sdk::export_plugin! { name: "models", kinds: [RandomLlama, Summarize] }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, kinds: [$($kind:ty),* $(,)?] $(,)?) => {
        #[doc(hidden)]
        fn __agentmerge_registry() -> &'static $crate::__private::Registry {
            static REGISTRY: ::std::sync::OnceLock<$crate::__private::Registry> = ::std::sync::OnceLock::new();
            REGISTRY.get_or_init(|| $crate::__private::Registry {
                plugin: $name,
                version: env!("CARGO_PKG_VERSION"),
                kinds: vec![$($crate::__private::KindEntry::of::<$kind>()),*],
            })
        }

        #[doc(hidden)]
        mod __agentmerge_exports {
            use $crate::__private::abi_stable::std_types::{RResult, RStr, RString, RVec};
            use $crate::abi::{FfiPort, HostCtx, PluginMod, PluginModRef};

            extern "C" fn manifest() -> RResult<RString, RString> {
                $crate::__private::manifest(super::__agentmerge_registry())
            }
            extern "C" fn validate(kind: RStr<'_>, config: RStr<'_>) -> RResult<RString, RString> {
                $crate::__private::validate(super::__agentmerge_registry(), kind, config)
            }
            extern "C" fn run(kind: RStr<'_>, config: RStr<'_>, ctx: &HostCtx, inputs: RVec<FfiPort>) -> RResult<RVec<FfiPort>, RString> {
                $crate::__private::run(super::__agentmerge_registry(), kind, config, ctx, inputs)
            }
            fn root_module() -> PluginModRef {
                use $crate::__private::abi_stable::prefix_type::PrefixTypeTrait;
                PluginMod { manifest, validate, run }.leak_into_prefix()
            }
            extern "C" fn load_root_module() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(root_module)
            }

            /// abi_stable's library header: the host checks layouts and versions through it.
            #[no_mangle]
            pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::abi_stable::library::LibHeader = unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<PluginModRef>(
                    load_root_module,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            };

            /// The SDK version this plugin was built against, NUL-terminated.
            #[no_mangle]
            pub static agentmerge_plugin_sdk_version: [u8; $crate::__private::SDK_VERSION_NUL.len()] =
                *$crate::__private::SDK_VERSION_NUL;
        }
    };
}

/// [`crate::SDK_VERSION`] with a trailing NUL, as exported by every plugin.
pub const SDK_VERSION_NUL: &[u8; crate::SDK_VERSION.len() + 1] = &{
    let v = crate::SDK_VERSION.as_bytes();
    let mut out = [0u8; crate::SDK_VERSION.len() + 1];
    let mut i = 0;
    while i < v.len() {
        out[i] = v[i];
        i += 1;
    }
    out
};
