//! Finding, checking and calling plugin libraries.
//!
//! Every dynamic library in the search path that exports the AgentMerge SDK symbol is a
//! plugin. Before anything of it runs, the host reads which SDK it was built against and
//! refuses an incompatible one with a message that says what to rebuild; then `abi_stable`
//! checks the layout of every type that crosses the boundary. Libraries are never unloaded.

use std::{
    collections::BTreeMap,
    ffi::CStr,
    path::{Path, PathBuf},
};

use abi_stable::{
    library::{lib_header_from_path, RootModule},
    std_types::{RResult, RStr, RVec},
};
use agentmerge_sdk::{
    abi::{FfiPort, HostCtx, PluginModRef},
    export::SDK_VERSION_SYMBOL,
    ConfigError, KindManifest, Manifest, Value,
};
use anyhow::{anyhow, bail, Context as _};

/// The environment variable holding extra plugin directories (`:`-separated).
pub const PLUGIN_PATH_ENV: &str = "AGENTMERGE_PLUGIN_PATH";

/// One loaded plugin library.
pub struct Plugin {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// blake3 of the library file: part of every cache key of its nodes.
    pub digest: String,
    module: PluginModRef,
}

/// A library in the search path that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

/// Every plugin found in the search path.
#[derive(Default)]
pub struct Registry {
    pub plugins: Vec<Plugin>,
    pub refused: Vec<Refused>,
    pub search_path: Vec<PathBuf>,
}

impl Registry {
    /// Loads every plugin in `dirs` (earlier directories win when two define one plugin).
    pub fn discover(dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry { search_path: dirs.to_vec(), ..Registry::default() };
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                tracing::debug!("plugin directory {} does not exist", dir.display());
                continue;
            };
            let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_dylib(p)).collect();
            files.sort();
            for path in files {
                match load(&path) {
                    Ok(None) => {}
                    Ok(Some(p)) => {
                        if let Some(first) = reg.plugins.iter().find(|q| q.manifest.plugin == p.manifest.plugin) {
                            tracing::debug!("plugin `{}` at {} is shadowed by {}", p.manifest.plugin, path.display(), first.path.display());
                        } else {
                            reg.plugins.push(p);
                        }
                    }
                    Err(e) => reg.refused.push(Refused { path, reason: format!("{e:#}") }),
                }
            }
        }
        reg
    }

    /// Looks up `plugin/kind`.
    pub fn kind(&self, uses: &str) -> Option<(&Plugin, &KindManifest)> {
        let (plugin, kind) = uses.split_once('/')?;
        let p = self.plugins.iter().find(|p| p.manifest.plugin == plugin)?;
        Some((p, p.manifest.kinds.iter().find(|k| k.name == kind)?))
    }

    pub fn plugin(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.manifest.plugin == name)
    }

    /// All `plugin/kind` names.
    pub fn kind_names(&self) -> Vec<String> {
        self.plugins.iter().flat_map(|p| p.manifest.kinds.iter().map(move |k| format!("{}/{}", p.manifest.plugin, k.name))).collect()
    }
}

/// The default search path: the directory of the running binary (the workspace's build
/// directory, where cargo puts the plugin libraries next to `agentmerge`), then
/// `$AGENTMERGE_PLUGIN_PATH`, then the pipeline's `plugin_path:` entries.
pub fn search_path(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(env) = std::env::var_os(PLUGIN_PATH_ENV) {
        dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(extra.iter().cloned());
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        if exe_dir.ends_with("deps") {
            dirs.extend(exe_dir.parent().map(Path::to_path_buf));
        }
        dirs.push(exe_dir);
    }
    dirs
}

fn is_dylib(p: &Path) -> bool {
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    p.is_file() && matches!(ext, "so" | "dylib" | "dll")
}

/// Loads one library; `Ok(None)` when it is not an AgentMerge plugin at all.
fn load(path: &Path) -> anyhow::Result<Option<Plugin>> {
    // 1. Which SDK was it built against? Read a plain C symbol first, so an incompatible
    //    plugin gets a precise message instead of a layout-mismatch dump.
    // SAFETY: loading a library runs its initialisers; plugin directories are trusted code.
    let lib = unsafe { libloading::Library::new(path) }.with_context(|| format!("cannot open {}", path.display()))?;
    let symbol = format!("{SDK_VERSION_SYMBOL}\0");
    let plugin_sdk = match unsafe { lib.get::<*const std::ffi::c_char>(symbol.as_bytes()) } {
        Ok(sym) => unsafe { CStr::from_ptr(*sym) }.to_string_lossy().into_owned(),
        Err(_) => return Ok(None),
    };
    // Libraries are never unloaded: their code may still be referenced (tensor owners).
    std::mem::forget(lib);
    let host_sdk = agentmerge_sdk::SDK_VERSION;
    if !agentmerge_sdk::sdk_compatible(host_sdk, &plugin_sdk) {
        bail!(
            "plugin library {} was built against agentmerge-sdk {plugin_sdk}, but this host uses agentmerge-sdk {host_sdk}; \
             rebuild the plugin against agentmerge-sdk {host_sdk} (set its dependency to `agentmerge-sdk = \"{host_sdk}\"` and run `cargo build`), \
             or use an agentmerge host built with agentmerge-sdk {plugin_sdk}",
            path.display()
        );
    }
    // 2. Layout and version check of everything that crosses the boundary.
    let module = lib_header_from_path(path)
        .and_then(|h| h.init_root_module::<PluginModRef>())
        .map_err(|e| anyhow!("plugin library {} failed the ABI check against agentmerge-sdk {host_sdk}: {e}; rebuild it against this SDK", path.display()))?;
    let manifest_json = into_result(module.manifest()()).map_err(|e| anyhow!("plugin library {}: manifest failed: {e}", path.display()))?;
    let manifest: Manifest = serde_json::from_str(&manifest_json).with_context(|| format!("plugin library {}: unreadable manifest", path.display()))?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let _ = PluginModRef::NAME;
    Ok(Some(Plugin { path: path.to_path_buf(), manifest, digest, module }))
}

fn into_result<T>(r: RResult<T, abi_stable::std_types::RString>) -> Result<T, String> {
    r.into_result().map_err(|e| e.into_string())
}

impl Plugin {
    /// Validates a node config; returns the resolved config (defaults filled in).
    pub fn validate(&self, kind: &str, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        let text = config.to_string();
        match into_result((self.module.validate())(RStr::from(kind), RStr::from(text.as_str()))) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| ConfigError::new("", format!("plugin returned bad JSON: {e}"))),
            Err(e) => Err(serde_json::from_str::<ConfigError>(&e).unwrap_or_else(|_| ConfigError::new("", e))),
        }
    }

    /// Runs a node. Inputs and outputs are by port name.
    pub fn run(
        &self,
        kind: &str,
        config: &serde_json::Value,
        ctx: &HostCtx,
        inputs: BTreeMap<String, Vec<Value>>,
    ) -> anyhow::Result<BTreeMap<String, Vec<Value>>> {
        let ffi_inputs: RVec<FfiPort> =
            inputs.into_iter().map(|(name, values)| FfiPort { name: name.into(), values: values.into_iter().map(Value::into_ffi).collect() }).collect();
        let text = config.to_string();
        let out = into_result((self.module.run())(RStr::from(kind), RStr::from(text.as_str()), ctx, ffi_inputs)).map_err(|e| anyhow!(e))?;
        let mut ports = BTreeMap::new();
        for p in out {
            let values = p.values.into_iter().map(Value::from_ffi).collect::<anyhow::Result<Vec<_>>>()?;
            ports.insert(p.name.into_string(), values);
        }
        Ok(ports)
    }
}
