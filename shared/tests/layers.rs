//! The layers of `shared` depend one way: no module names one of a later
//! layer, and the core names no HTTP or WebSocket crate (see `src/lib.rs`).

use std::path::Path;

/// The layers, first to last; `config` is a leaf that any layer may read.
const LAYERS: [&str; 6] = ["core", "backplane", "wire", "policy", "http", "app"];

fn sources(folder: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(folder).expect("src reads") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source reads");
            found.push((path.display().to_string(), text));
        }
    }
}

/// The layer a source file belongs to: its folder, or its own name.
fn layer_of(src: &Path, file: &str) -> Option<usize> {
    let relative = Path::new(file).strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    LAYERS.iter().position(|layer| *layer == name)
}

#[test]
fn no_module_imports_a_later_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for (file, text) in &files {
        let Some(own) = layer_of(&src, file) else {
            continue;
        };
        for later in &LAYERS[own + 1..] {
            if text.contains(&format!("crate::{later}")) {
                wrong.push(format!("{file} uses crate::{later}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(files.len() > 10, "the sources were found");
}

#[test]
fn the_core_names_no_http_or_websocket_crate() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    sources(&core, &mut files);
    assert!(!files.is_empty(), "the core was found");
    for (file, text) in &files {
        for foreign in ["warp", "hyper", "tungstenite", "http::"] {
            assert!(!text.contains(foreign), "{file} names {foreign}");
        }
    }
}
