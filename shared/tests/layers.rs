//! The layers of `shared` depend one way (see `src/lib.rs`): no module names
//! one of a later layer, `config` names none (a leaf every layer may read),
//! and the core and the backplane name no HTTP or WebSocket crate.
//!
//! Checked on the parsed sources, so that a name is seen however it is
//! written: in a grouped import (`use crate::{http::…}`), through `super` or
//! `self`, renamed, as a glob, as a path in the code, or in a macro's tokens.
//! `testing` (feature `testing`) may use anything, and `lib.rs` declares them
//! all.

use std::path::Path;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::Visit;

/// The layers, first to last.
const LAYERS: [&str; 6] = ["core", "backplane", "wire", "policy", "http", "app"];

/// The layers that name no HTTP or WebSocket crate.
const WITHOUT_WEB: [&str; 2] = ["core", "backplane"];

/// Whether `name` is an HTTP or WebSocket crate (or one of their parts).
fn is_web_crate(name: &str) -> bool {
    ["warp", "hyper", "http", "tungstenite"]
        .iter()
        .any(|web| name == *web || name.starts_with(&format!("{web}_")))
        || name == "httparse"
        || name == "tokio_tungstenite"
}

/// What a path names.
enum Target {
    /// In this crate: the path from its root (empty: the root itself; `*`
    /// for a glob).
    Crate(Vec<String>),
    /// Something else in scope, or another crate: the path's first name.
    Other(String),
}

/// Where a path was written.
#[derive(Clone, Copy)]
enum How {
    Use,
    Path,
    Macro,
    ExternCrate,
}

/// One path a source names: as written, and what it names.
struct Naming {
    written: String,
    target: Target,
}

/// Every path in a source, with the module it is in.
struct Names {
    /// The module being read, from the crate root (`["core", "hub"]`).
    module: Vec<String>,
    found: Vec<Naming>,
}

impl Names {
    /// Resolves `segments` as written in the current module: from the root
    /// after `crate`, from here after `self` and `super` (each `super` one
    /// module up).
    fn name(&mut self, segments: Vec<String>, leading_colon: bool, how: How) {
        let Some(first) = segments.first() else {
            return;
        };
        let path = format!(
            "{}{}",
            if leading_colon { "::" } else { "" },
            segments.join("::")
        );
        let written = match how {
            How::Use => format!("use {path}"),
            How::Path => path,
            How::Macro => format!("{path} (in a macro)"),
            How::ExternCrate => format!("extern crate {path}"),
        };
        let (mut module, mut rest) = match first.as_str() {
            _ if leading_colon => (None, &segments[..]),
            "crate" => (Some(Vec::new()), &segments[1..]),
            "self" | "super" => (Some(self.module.clone()), &segments[..]),
            _ => (None, &segments[..]),
        };
        if let Some(module) = &mut module {
            while let Some(step) = rest.first() {
                match step.as_str() {
                    "self" => {}
                    "super" => {
                        module.pop();
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
            module.extend(rest.iter().cloned());
        }
        let target = match module {
            Some(module) => Target::Crate(module),
            None => Target::Other(first.clone()),
        };
        self.found.push(Naming { written, target });
    }

    /// Every path a `use` tree brings in, each as one path.
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>, leading_colon: bool) {
        let whole = |names: &mut Names, last: Option<String>| {
            let mut segments = prefix.clone();
            segments.extend(last);
            names.name(segments, leading_colon, How::Use);
        };
        // `use a::b::{self}` names `a::b`.
        let last = |ident: &syn::Ident| (ident != "self").then(|| ident.to_string());
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(&path.tree, prefix, leading_colon);
                prefix.pop();
            }
            syn::UseTree::Name(name) => whole(self, last(&name.ident)),
            syn::UseTree::Rename(rename) => whole(self, last(&rename.ident)),
            syn::UseTree::Glob(_) => whole(self, Some("*".to_owned())),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(tree, prefix, leading_colon);
                }
            }
        }
    }

    /// The paths in a macro's tokens (`a::b`, `::a::b`), which syn leaves
    /// unparsed.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut path = Vec::new();
        let mut leading_colon = false;
        // The first `:` of a `::`, then the whole `::`, just read.
        let (mut colon, mut colons) = (false, false);
        for token in tokens {
            match token {
                TokenTree::Punct(punct) if punct.as_char() == ':' && colon => {
                    colon = false;
                    colons = true;
                    leading_colon |= path.is_empty();
                    continue;
                }
                TokenTree::Punct(punct)
                    if punct.as_char() == ':' && punct.spacing() == Spacing::Joint =>
                {
                    colon = true;
                    continue;
                }
                TokenTree::Ident(ident) => {
                    if !colons {
                        // A new path begins.
                        self.flush(&mut path, &mut leading_colon);
                    }
                    path.push(ident.to_string());
                }
                TokenTree::Group(group) => {
                    self.flush(&mut path, &mut leading_colon);
                    self.tokens(group.stream());
                }
                _ => self.flush(&mut path, &mut leading_colon),
            }
            (colon, colons) = (false, false);
        }
        self.flush(&mut path, &mut leading_colon);
    }

    fn flush(&mut self, path: &mut Vec<String>, leading_colon: &mut bool) {
        let path = std::mem::take(path);
        if path.len() > 1 || (*leading_colon && !path.is_empty()) {
            self.name(path, *leading_colon, How::Macro);
        }
        *leading_colon = false;
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // An inline module (`mod tests { … }`) is a module of its own: its
        // `super` is the file's module.
        self.module.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&item.tree, &mut Vec::new(), item.leading_colon.is_some());
    }

    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        self.name(vec![item.ident.to_string()], true, How::ExternCrate);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        // One name alone is a local one (a variable, a type in scope).
        if path.leading_colon.is_some() || path.segments.len() > 1 {
            let segments = path.segments.iter().map(|s| s.ident.to_string());
            self.name(segments.collect(), path.leading_colon.is_some(), How::Path);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The module a source file is, from the crate root: `core/hub.rs` is
/// `["core", "hub"]`, `core/mod.rs` is `["core"]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut module: Vec<String> = file
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if module
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        module.pop();
    }
    module
}

/// What the source of `file` (relative to `src/`) names that its place does
/// not allow, one line each.
fn leaks(file: &Path, source: &str) -> Vec<String> {
    let module = module_of(file);
    let Some(top) = module.first().cloned() else {
        return Vec::new();
    };
    let top = top.as_str();
    // The layers this file may not name: those after its own; all, for config.
    let (forbidden, rule): (&[&str], String) = match LAYERS.iter().position(|layer| *layer == top) {
        Some(own) => (&LAYERS[own + 1..], format!("a later layer than {top}")),
        None if top == "config" => (&LAYERS, "while config is a leaf".to_owned()),
        None => return Vec::new(),
    };
    let parsed = syn::parse_file(source)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", file.display()));
    let mut names = Names {
        module,
        found: Vec::new(),
    };
    names.visit_file(&parsed);
    let mut wrong = Vec::new();
    for Naming { written, target } in names.found {
        let why = match &target {
            // The root itself, or all of it: every layer.
            Target::Crate(path) if path.is_empty() || path[0] == "*" => (!forbidden.is_empty())
                .then(|| format!("names the crate's root: {}, {rule}", forbidden.join(", "))),
            Target::Crate(path) => forbidden
                .contains(&path[0].as_str())
                .then(|| format!("names crate::{}, {rule}", path[0])),
            Target::Other(first) if WITHOUT_WEB.contains(&top) && is_web_crate(first) => {
                Some(format!("names {first}, an HTTP or WebSocket crate"))
            }
            Target::Other(_) => None,
        };
        if let Some(why) = why {
            wrong.push(format!("src/{}: `{written}` {why}", file.display()));
        }
    }
    wrong
}

/// Every `.rs` file below `folder`, relative to `src`, with its text.
fn sources(src: &Path, folder: &Path, found: &mut Vec<(std::path::PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(src, &path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source reads");
            let relative = path.strip_prefix(src).expect("below src").to_owned();
            found.push((relative, text));
        }
    }
}

#[test]
fn every_layer_names_only_the_layers_before_it_and_the_core_no_web_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    assert!(files.len() > 10, "the sources were found");
    // A layer may have no files yet (`backplane`, say); the core has.
    assert!(
        files.iter().any(|(file, _)| file.starts_with("core")),
        "the core was found"
    );
    let wrong: Vec<String> = files
        .iter()
        .flat_map(|(file, text)| leaks(file, text))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// The checker itself, on sources written here.

fn leaks_in(file: &str, source: &str) -> Vec<String> {
    leaks(Path::new(file), source)
}

#[test]
fn a_grouped_import_of_a_later_layer_is_a_leak() {
    let source = "use crate::{core::Hub, http::{Context, refusal::Refusal}, config::Config};";
    assert_eq!(
        leaks_in("wire/sse.rs", source),
        [
            "src/wire/sse.rs: `use crate::http::Context` names crate::http, a later layer than wire",
            "src/wire/sse.rs: `use crate::http::refusal::Refusal` names crate::http, a later layer than wire",
        ]
    );
}

#[test]
fn a_later_layer_reached_through_super_self_a_path_or_a_macro_is_a_leak() {
    for (file, source) in [
        ("core/hub.rs", "use super::super::policy::Reason;"),
        ("core/mod.rs", "use super::app as assembly;"),
        ("core/mod.rs", "pub use self::super::wire::Message;"),
        ("core/hub.rs", "fn f() -> crate::http::Context { todo!() }"),
        (
            "core/hub.rs",
            "fn f() { let _ = super::super::http::direct::serve; }",
        ),
        (
            "core/hub.rs",
            r#"fn f() { log::info!("{}", crate::backplane::NAME); }"#,
        ),
        (
            "backplane/redis.rs",
            "fn f() { tokio::select! { _ = crate::app::run() => {} } }",
        ),
        ("policy/input.rs", "use crate::*;"),
        ("policy/input.rs", "use crate as root;"),
        ("config.rs", "use crate::core::EventId;"),
    ] {
        assert_eq!(leaks_in(file, source).len(), 1, "{file}: {source}");
    }
}

#[test]
fn earlier_layers_config_and_the_modules_own_tests_are_allowed() {
    for (file, source) in [
        (
            "http/server.rs",
            "use crate::{core::Hub, config::Config, policy::{self, Reason}};",
        ),
        (
            "http/server.rs",
            "use super::connections::Slot; use super::super::wire;",
        ),
        (
            "app.rs",
            "use crate::http::{self, Context}; fn f() { crate::core::Hub::new(); }",
        ),
        (
            "config.rs",
            "fn f() {} #[cfg(test)] mod tests { use super::*; }",
        ),
        (
            "core/hub.rs",
            "mod tests { use super::super::id::EventId; }",
        ),
        ("testing.rs", "use crate::app::Server;"),
        ("lib.rs", "pub use app::Server;"),
    ] {
        assert_eq!(
            leaks_in(file, source),
            Vec::<String>::new(),
            "{file}: {source}"
        );
    }
}

#[test]
fn the_core_and_the_backplane_name_no_web_crate_however_written() {
    for source in [
        "use hyper::Request;",
        "use ::warp::Filter;",
        "use {tokio, tokio_tungstenite::WebSocketStream};",
        "fn f() -> http::StatusCode { todo!() }",
        "fn f() { let _ = hyper_util::rt::TokioIo::new; }",
        r#"fn f() { assert!(warp::test::request().matches()); }"#,
        "extern crate httparse;",
    ] {
        for file in ["core/hub.rs", "backplane/stream.rs"] {
            assert_eq!(leaks_in(file, source).len(), 1, "{file}: {source}");
        }
        assert_eq!(leaks_in("http/server.rs", source), Vec::<String>::new());
    }
    // A variable called http is not the crate.
    let local = "fn f(http: u8) -> u8 { http }";
    assert_eq!(leaks_in("core/hub.rs", local), Vec::<String>::new());
}
