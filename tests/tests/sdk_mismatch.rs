//! A plugin built against an incompatible SDK is refused with a message that names the
//! library, both SDK versions and what to rebuild — never loaded, never a crash.
//!
//! The test makes a copy of the SDK whose version is 0.99.0, builds a small plugin against it
//! with cargo (as a user with an outdated plugin would have), and points the host at it.

mod common;

use common::*;

#[test]
fn plugin_built_against_another_sdk_is_refused() {
    let root = workspace();
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    // A workspace like ours, but whose SDK is version 0.99.0.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let start = manifest.find("[workspace.package]").unwrap();
    let mut manifest = format!("[workspace]\nresolver = \"2\"\nmembers = [\"sdk/agentmerge-sdk\", \"old-plugin\"]\n\n{}", &manifest[start..]);
    manifest = manifest.replacen(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION")), "version = \"0.99.0\"", 1);
    write(&ws, "Cargo.toml", &manifest);
    std::fs::copy(root.join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    copy_dir(&root.join("sdk/agentmerge-sdk"), &ws.join("sdk/agentmerge-sdk"));
    write(
        &ws,
        "old-plugin/Cargo.toml",
        "[package]\nname = \"old-plugin\"\nversion = \"0.3.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nagentmerge-sdk.workspace = true\nserde.workspace = true\nschemars.workspace = true\nanyhow.workspace = true\n",
    );
    write(
        &ws,
        "old-plugin/src/lib.rs",
        r#"use agentmerge_sdk::prelude::*;
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zero {}
impl NodeKind for Zero {
    const NAME: &'static str = "zero";
    const DOC: &'static str = "Emits 0.";
    fn ports() -> Ports { Ports::new().output("value", PortType::Scalar, "zero") }
    fn run(&self, _: &Ctx, _: Inputs) -> anyhow::Result<Outputs> { Ok(Outputs::new().with("value", 0.0)) }
}
export_plugin! { name: "old", kinds: [Zero] }
"#,
    );
    let lib = build_external_plugin(&ws.join("old-plugin"), "old_plugin");
    let dir = t.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let lib_copy = dir.join(lib.file_name().unwrap());
    std::fs::copy(&lib, &lib_copy).unwrap();

    let listing = ok(t.path(), &["plugins", "--plugin-path", dir.to_str().unwrap()]);
    let expected = format!(
        "plugin library {} was built against agentmerge-sdk 0.99.0, but this host uses agentmerge-sdk {}; rebuild the plugin against agentmerge-sdk {}",
        lib_copy.display(),
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(listing.contains(&format!("refused: {expected}")), "{listing}");
    assert!(listing.contains(&format!("debug {}", env!("CARGO_PKG_VERSION"))), "the compatible plugins still load:\n{listing}");

    // A pipeline that uses it fails validation with the same explanation, located at `uses:`.
    write(t.path(), "p.yaml", "nodes:\n  - id: z\n    uses: old/zero\n");
    let out = agentmerge(t.path(), &["check", "p.yaml", "--plugin-path", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("p.yaml:3:11: error: unknown plugin `old`"), "{err}");
    assert!(err.contains(&expected), "{err}");
}
