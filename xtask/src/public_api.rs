//! `cargo xtask public-api [--bless]`: the public surface of every publishable library, one
//! sorted line per item, committed under `docs/public-api/<package>.txt`, so that a change of
//! the surface is a visible diff (and CI fails until the listing is blessed).
//!
//! The listing comes from rustdoc's JSON output, which is unstable: the stable toolchain
//! accepts `-Z unstable-options --output-format json` only with `RUSTC_BOOTSTRAP=1`. That
//! variable is given to rustdoc alone, through a wrapper script named by `RUSTDOC`: set for
//! the whole build it would reach the build scripts that probe for a nightly compiler, and
//! the dependencies would be rebuilt (twice a CI run, as the other steps build without it).
//! The dependencies' metadata is the `doc` step's, shared.
//!
//! Each line is `<kind> <path>` and, where it says something, the signature: a function's
//! parameters and result, a field's or constant's type, an enum variant's fields, a trait's
//! supertraits, the traits a type implements (auto traits included: losing `Send` breaks
//! users). Items are reached from the crate root through public modules and re-exports, so
//! an item reachable by two paths shows twice. Only the fields this walk reads are assumed;
//! anything it does not recognise prints as `?` instead of failing, so a new rustdoc format
//! shows up as a diff, not as an error.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::cmd::{self, Error, Result};
use crate::json::Value;

/// Where the listings live, from the workspace root.
pub(crate) const DIR: &str = "docs/public-api";

/// Auto traits worth listing (a type that stops being `Send` breaks its users); the other
/// synthetic impls (`Freeze`, ...) are compiler internals that come and go with toolchains.
const AUTO_TRAITS: &[&str] = &["Send", "Sync", "Unpin", "UnwindSafe", "RefUnwindSafe"];

/// Trait impls that are compiler plumbing of a derive, not API (`#[derive(PartialEq)]`
/// also implements the unstable `StructuralPartialEq`).
const PLUMBING_TRAITS: &[&str] = &["StructuralPartialEq"];

/// A publishable library: its package name and its crate (Rust path) name.
pub(crate) struct Library {
    pub(crate) package: String,
    pub(crate) crate_name: String,
}

/// Builds the JSON of every workspace library, then compares each publishable library's
/// listing with the committed file, or rewrites the files when `bless`.
pub(crate) fn run(root: &Path, target_dir: &Path, libraries: &[Library], bless: bool) -> Result {
    build_json(root, target_dir)?;
    let dir = root.join(DIR);
    let mut stale = Vec::new();
    let mut expected_files = BTreeSet::new();
    for library in libraries {
        let json_path = target_dir
            .join("doc")
            .join(format!("{}.json", library.crate_name));
        let text = std::fs::read_to_string(&json_path)
            .map_err(|e| Error::msg(format!("{}: {e}", json_path.display())))?;
        let listing = listing(library, &crate::json::parse(&text)?)?;
        let file_name = format!("{}.txt", library.package);
        let file = dir.join(&file_name);
        expected_files.insert(file_name);
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        if committed == listing {
            println!("{}: unchanged ({} items)", library.package, count(&listing));
            continue;
        }
        if bless {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&file, &listing)?;
            println!("{}: written ({} items)", library.package, count(&listing));
        } else {
            println!("{}: differs from {}:", library.package, rel(root, &file));
            print!("{}", diff(&committed, &listing));
            stale.push(library.package.clone());
        }
    }
    // A listing of a package that is no longer published must go too.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".txt") && !expected_files.contains(&name) {
                if bless {
                    std::fs::remove_file(dir.join(&name))?;
                    println!("{name}: removed (no such publishable library)");
                } else {
                    println!("{DIR}/{name}: no publishable library of that name");
                    stale.push(name);
                }
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "the public API changed ({}); if that is intended, run `cargo xtask public-api \
             --bless` and commit {DIR}/",
            stale.join(", ")
        )))
    }
}

fn count(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| !l.starts_with("# ") && !l.is_empty())
        .count()
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `cargo doc --workspace --all-features --no-deps --lib` with JSON output: the same
/// packages and features as the `doc` step, so the dependencies' metadata is reused.
fn build_json(root: &Path, target_dir: &Path) -> Result {
    let wrapper = rustdoc_wrapper(target_dir)?;
    cmd::cargo(root)
        .env("CARGO_INCREMENTAL", "0")
        .env("RUSTDOC", &wrapper)
        .env("RUSTDOCFLAGS", "-Z unstable-options --output-format json")
        .args([
            "doc",
            "--workspace",
            "--all-features",
            "--no-deps",
            "--lib",
            "--locked",
        ])
        .run()
}

/// A script that runs rustdoc with `RUSTC_BOOTSTRAP=1` (see the module docs).
fn rustdoc_wrapper(target_dir: &Path) -> Result<PathBuf> {
    let dir = target_dir.join("xtask");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("rustdoc-json");
    let real = std::env::var("RUSTDOC").unwrap_or_else(|_| "rustdoc".to_owned());
    let script = format!(
        "#!/bin/sh\n# Written by `cargo xtask public-api`: rustdoc's JSON output needs this on \
         stable.\nRUSTC_BOOTSTRAP=1 exec {} \"$@\"\n",
        shell_quote(&real)
    );
    std::fs::write(&path, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The listing of one crate's rustdoc JSON: a header, then the sorted lines.
pub(crate) fn listing(library: &Library, doc: &Value) -> Result<String> {
    let index: HashMap<String, &Value> = match doc.get("index") {
        Some(Value::Object(members)) => members.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => return Err(Error::msg("rustdoc JSON: no `index` object")),
    };
    let root = doc
        .get("root")
        .map(id)
        .ok_or_else(|| Error::msg("rustdoc JSON: no `root`"))?;
    let mut walk = Walk {
        index: &index,
        lines: BTreeSet::new(),
        stack: Vec::new(),
    };
    walk.module(&root, &library.crate_name);
    let mut out = format!(
        "# The public API of {package} (Rust path `{krate}`), all features.\n\
         # Generated by `cargo xtask public-api --bless`; CI fails when it differs.\n",
        package = library.package,
        krate = library.crate_name,
    );
    for (_, line) in walk.lines {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// An item id as a key of `index` (ids are numbers in recent formats, strings in older ones).
fn id(value: &Value) -> String {
    match value {
        Value::Number(n) => format!("{n}"),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

struct Walk<'a> {
    index: &'a HashMap<String, &'a Value>,
    /// `(path, line)`: sorted by path, so that a type's items stay together.
    lines: BTreeSet<(String, String)>,
    /// Modules being walked, against re-export cycles.
    stack: Vec<String>,
}

impl<'a> Walk<'a> {
    fn add(&mut self, path: &str, line: String) {
        self.lines.insert((path.to_owned(), line));
    }

    fn item(&self, id: &str) -> Option<&'a Value> {
        self.index.get(id).copied()
    }

    fn module(&mut self, module_id: &str, path: &str) {
        if self.stack.iter().any(|m| m == module_id) {
            return;
        }
        let Some(items) = self
            .item(module_id)
            .and_then(|m| inner(m, "module"))
            .and_then(|m| m.get("items"))
        else {
            return;
        };
        self.stack.push(module_id.to_owned());
        for item_id in items.as_array().iter().map(id) {
            self.entry(&item_id, path);
        }
        self.stack.pop();
    }

    /// One item of a module at `parent`.
    fn entry(&mut self, item_id: &str, parent: &str) {
        let Some(item) = self.item(item_id) else {
            return;
        };
        if item.get("visibility").and_then(Value::as_str) != Some("public") {
            return;
        }
        if let Some(import) = inner(item, "use") {
            self.import(import, parent);
            return;
        }
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            return;
        };
        self.named(item, &format!("{parent}::{name}"));
    }

    /// A `pub use`: the item under its new name, a glob's items, or an outside item.
    fn import(&mut self, import: &Value, parent: &str) {
        let source = import.get("source").and_then(Value::as_str).unwrap_or("?");
        let name = import.get("name").and_then(Value::as_str).unwrap_or("?");
        let glob = matches!(import.get("is_glob"), Some(Value::Bool(true)));
        let target = import
            .get("id")
            .map(id)
            .filter(|t| self.index.contains_key(t));
        match target {
            Some(target) if glob => self.module(&target, parent),
            Some(target) => {
                if let Some(item) = self.item(&target) {
                    self.named(item, &format!("{parent}::{name}"));
                }
            }
            None if glob => {
                self.add(
                    &format!("{parent}::*"),
                    format!("use {parent}::* = {source}::*"),
                );
            }
            None => {
                self.add(
                    &format!("{parent}::{name}"),
                    format!("use {parent}::{name} = {source}"),
                );
            }
        }
    }

    /// An item (not a `use`) listed at `path`.
    fn named(&mut self, item: &Value, path: &str) {
        let Some((kind, body)) = kind(item) else {
            return;
        };
        let non_exhaustive = if has_attr(item, "non_exhaustive") {
            " #[non_exhaustive]"
        } else {
            ""
        };
        match kind {
            "module" => {
                self.add(path, format!("mod {path}"));
                if let Some(module_id) = item.get("id").map(id) {
                    self.module(&module_id, path);
                }
            }
            "struct" => {
                let shape = match body.get("kind") {
                    Some(Value::String(unit)) if unit == "unit" => " (unit)".to_owned(),
                    Some(shape) => self.struct_shape(shape, path),
                    None => String::new(),
                };
                let generics = generics(body.get("generics"));
                self.add(
                    path,
                    format!("struct {path}{generics}{shape}{non_exhaustive}"),
                );
                self.impls(body.get("impls"), path);
            }
            "enum" => {
                let generics = generics(body.get("generics"));
                self.add(path, format!("enum {path}{generics}{non_exhaustive}"));
                for variant_id in ids(body.get("variants")) {
                    self.variant(&variant_id, path);
                }
                self.impls(body.get("impls"), path);
            }
            "union" => {
                self.add(path, format!("union {path}"));
                self.impls(body.get("impls"), path);
            }
            "trait" => {
                let bounds = bounds(body.get("bounds"));
                let supertraits = if bounds.is_empty() {
                    String::new()
                } else {
                    format!(": {bounds}")
                };
                let generics = generics(body.get("generics"));
                self.add(path, format!("trait {path}{generics}{supertraits}"));
                for member_id in ids(body.get("items")) {
                    if let Some(member) = self.item(&member_id) {
                        self.member(member, path, true);
                    }
                }
            }
            "function" => {
                self.add(path, function(path, body));
            }
            "constant" => {
                let ty = body.get("type").map(render).unwrap_or_else(unknown);
                self.add(path, format!("const {path}: {ty}"));
            }
            "static" => {
                let ty = body.get("type").map(render).unwrap_or_else(unknown);
                self.add(path, format!("static {path}: {ty}"));
            }
            "type_alias" => {
                let ty = body.get("type").map(render).unwrap_or_else(unknown);
                let generics = generics(body.get("generics"));
                self.add(path, format!("type {path}{generics} = {ty}"));
            }
            "macro" | "proc_macro" => {
                self.add(path, format!("macro {path}!"));
            }
            "trait_alias" => {
                self.add(path, format!("trait alias {path}"));
            }
            "extern_crate" => {
                self.add(path, format!("extern crate {path}"));
            }
            other => {
                self.add(path, format!("{other} {path}"));
            }
        }
    }

    /// ` { a: u8, .. }`-like text for a struct's fields, and the public fields as lines.
    fn struct_shape(&mut self, shape: &Value, path: &str) -> String {
        if let Some(plain) = shape.get("plain") {
            let hidden = matches!(plain.get("has_stripped_fields"), Some(Value::Bool(true)));
            for field_id in ids(plain.get("fields")) {
                if let Some(field) = self.item(&field_id) {
                    let name = field.get("name").and_then(Value::as_str).unwrap_or("?");
                    let ty = inner(field, "struct_field")
                        .map(render)
                        .unwrap_or_else(unknown);
                    self.add(
                        &format!("{path}::{name}"),
                        format!("field {path}::{name}: {ty}"),
                    );
                }
            }
            return if hidden {
                " (private fields)".to_owned()
            } else {
                String::new()
            };
        }
        if let Some(tuple) = shape.get("tuple") {
            let fields: Vec<String> = tuple
                .as_array()
                .iter()
                .map(|f| match f {
                    Value::Null => "_".to_owned(),
                    field_id => self
                        .item(&id(field_id))
                        .and_then(|field| inner(field, "struct_field"))
                        .map(render)
                        .unwrap_or_else(unknown),
                })
                .collect();
            return format!("({})", fields.join(", "));
        }
        String::new()
    }

    fn variant(&mut self, variant_id: &str, enum_path: &str) {
        let Some(variant) = self.item(variant_id) else {
            return;
        };
        let name = variant.get("name").and_then(Value::as_str).unwrap_or("?");
        let shape = match inner(variant, "variant").and_then(|v| v.get("kind")) {
            Some(Value::Object(_)) => {
                let kind = inner(variant, "variant").and_then(|v| v.get("kind"));
                match kind {
                    Some(k) if k.get("tuple").is_some() => {
                        let fields: Vec<String> = k
                            .get("tuple")
                            .map(Value::as_array)
                            .unwrap_or_default()
                            .iter()
                            .map(|f| self.field_type(f))
                            .collect();
                        format!("({})", fields.join(", "))
                    }
                    Some(k) => {
                        let fields = k.get("struct").and_then(|s| s.get("fields"));
                        let named: Vec<String> = ids(fields)
                            .iter()
                            .filter_map(|f| self.item(f))
                            .map(|f| {
                                let n = f.get("name").and_then(Value::as_str).unwrap_or("?");
                                let t =
                                    inner(f, "struct_field").map(render).unwrap_or_else(unknown);
                                format!("{n}: {t}")
                            })
                            .collect();
                        format!(" {{ {} }}", named.join(", "))
                    }
                    None => String::new(),
                }
            }
            _ => String::new(),
        };
        self.add(
            &format!("{enum_path}::{name}"),
            format!("variant {enum_path}::{name}{shape}"),
        );
    }

    fn field_type(&self, field: &Value) -> String {
        match field {
            Value::Null => "_".to_owned(),
            field_id => self
                .item(&id(field_id))
                .and_then(|f| inner(f, "struct_field"))
                .map(render)
                .unwrap_or_else(unknown),
        }
    }

    /// A type's impls: inherent items as lines of their own, trait impls as `impl T for`.
    fn impls(&mut self, impl_ids: Option<&Value>, path: &str) {
        for impl_id in ids(impl_ids) {
            let Some(block) = self.item(&impl_id).and_then(|i| inner(i, "impl")) else {
                continue;
            };
            if !matches!(block.get("blanket_impl"), None | Some(Value::Null)) {
                continue;
            }
            match block.get("trait") {
                None | Some(Value::Null) => {
                    for member_id in ids(block.get("items")) {
                        if let Some(member) = self.item(&member_id)
                            && member.get("visibility").and_then(Value::as_str) == Some("public")
                        {
                            self.member(member, path, false);
                        }
                    }
                }
                Some(trait_path) => {
                    let name = path_of(trait_path);
                    let synthetic = matches!(block.get("is_synthetic"), Some(Value::Bool(true)));
                    if (synthetic && !AUTO_TRAITS.contains(&name.as_str()))
                        || PLUMBING_TRAITS.contains(&name.as_str())
                    {
                        continue;
                    }
                    let negative = if matches!(block.get("is_negative"), Some(Value::Bool(true))) {
                        "!"
                    } else {
                        ""
                    };
                    let args = trait_path.get("args").map(generic_args).unwrap_or_default();
                    self.add(path, format!("impl {negative}{name}{args} for {path}"));
                }
            }
        }
    }

    /// A method, associated constant or type of a trait or an inherent impl.
    fn member(&mut self, member: &Value, owner: &str, in_trait: bool) {
        let Some(name) = member.get("name").and_then(Value::as_str) else {
            return;
        };
        let path = format!("{owner}::{name}");
        let Some((kind, body)) = kind(member) else {
            return;
        };
        let line = match kind {
            "function" => {
                let provided = in_trait && matches!(body.get("has_body"), Some(Value::Bool(true)));
                let line = function(&path, body);
                if provided {
                    format!("{line} (provided)")
                } else {
                    line
                }
            }
            "assoc_const" | "constant" => {
                let ty = body.get("type").map(render).unwrap_or_else(unknown);
                format!("const {path}: {ty}")
            }
            "assoc_type" => {
                let bounds = bounds(body.get("bounds"));
                match (body.get("type"), bounds.is_empty()) {
                    (Some(ty @ Value::Object(_)), _) => format!("type {path} = {}", render(ty)),
                    (_, false) => format!("type {path}: {bounds}"),
                    _ => format!("type {path}"),
                }
            }
            other => format!("{other} {path}"),
        };
        self.add(&path, line);
    }
}

/// The single key of an item's `inner` object and its value.
fn kind(item: &Value) -> Option<(&str, &Value)> {
    match item.get("inner") {
        Some(Value::Object(members)) => members.first().map(|(k, v)| (k.as_str(), v)),
        Some(Value::String(unit)) => Some((unit.as_str(), &Value::Null)),
        _ => None,
    }
}

fn inner<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get("inner").and_then(|i| i.get(key))
}

fn ids(list: Option<&Value>) -> Vec<String> {
    list.map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .map(id)
        .collect()
}

/// Whether an attribute list mentions `name` (plain strings in format 57, objects later).
fn has_attr(item: &Value, name: &str) -> bool {
    item.get("attrs")
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .any(|attr| match attr {
            Value::String(text) => text.contains(name),
            Value::Object(members) => members.iter().any(|(k, _)| k == name),
            _ => false,
        })
}

fn unknown() -> String {
    "?".to_owned()
}

/// `fn path<generics>(params) -> output`, with `async`/`const`/`unsafe` in front. An
/// `#[async_trait]` method is shown as the `async fn` its source says, not as the boxed
/// future the macro expands it to.
fn function(path: &str, body: &Value) -> String {
    let sig = body.get("sig");
    let async_output = sig
        .and_then(|s| s.get("output"))
        .and_then(async_trait_output);
    if let Some(output) = async_output
        && has_async_trait_lifetime(body.get("generics"))
    {
        let params = parameters(sig);
        let params: Vec<String> = params
            .iter()
            .map(|p| without_async_trait_lifetimes(p))
            .collect();
        let output = match render(output).as_str() {
            "()" => String::new(),
            ty => format!(" -> {ty}"),
        };
        return format!("async fn {path}({}){output}", params.join(", "));
    }
    let header = body.get("header");
    let flag = |name: &str| matches!(header.and_then(|h| h.get(name)), Some(Value::Bool(true)));
    let mut prefix = String::new();
    for (name, word) in [
        ("is_const", "const "),
        ("is_async", "async "),
        ("is_unsafe", "unsafe "),
    ] {
        if flag(name) {
            prefix.push_str(word);
        }
    }
    let params = parameters(sig);
    let output = match sig.and_then(|s| s.get("output")) {
        None | Some(Value::Null) => String::new(),
        Some(ty) => format!(" -> {}", render(ty)),
    };
    let generics = generics(body.get("generics"));
    let clauses = where_clauses(body.get("generics"));
    format!(
        "{prefix}fn {path}{generics}({}){output}{clauses}",
        params.join(", ")
    )
}

/// `Output` of `Pin<Box<dyn Future<Output = T> + Send + 'async_trait>>`, the return type
/// `#[async_trait]` gives a method.
fn async_trait_output(ty: &Value) -> Option<&Value> {
    fn first_arg(ty: &Value) -> Option<&Value> {
        ty.get("resolved_path")?
            .get("args")?
            .get("angle_bracketed")?
            .get("args")?
            .as_array()
            .first()?
            .get("type")
    }
    let boxed = first_arg(ty)?;
    let future = first_arg(boxed)?
        .get("dyn_trait")?
        .get("traits")?
        .as_array()
        .first()?;
    let constraint = future
        .get("trait")?
        .get("args")?
        .get("angle_bracketed")?
        .get("constraints")?
        .as_array()
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some("Output"))?;
    constraint.get("binding")?.get("equality")?.get("type")
}

fn has_async_trait_lifetime(generics: Option<&Value>) -> bool {
    generics
        .and_then(|g| g.get("params"))
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .any(|p| p.get("name").and_then(Value::as_str) == Some("'async_trait"))
}

/// `&'life0 self` as the source wrote it: `&self`.
fn without_async_trait_lifetimes(param: &str) -> String {
    let mut out = param.to_owned();
    while let Some(start) = out.find("'life") {
        let digits = out
            .get(start.saturating_add(5)..)
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        let end = start.saturating_add(5).saturating_add(digits);
        let end = if out.get(end..end.saturating_add(1)) == Some(" ") {
            end.saturating_add(1)
        } else {
            end
        };
        out.replace_range(start..end, "");
    }
    out
}

/// A function's parameters as `name: Type`, `self` in its short forms.
fn parameters(sig: Option<&Value>) -> Vec<String> {
    sig.and_then(|s| s.get("inputs"))
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .map(|input| {
            let pair = input.as_array();
            let name = pair.first().and_then(Value::as_str).unwrap_or("_");
            let ty = pair.get(1).map(render).unwrap_or_else(unknown);
            if name == "self" {
                match ty.strip_suffix("Self") {
                    // `self`, `&self`, `&'a mut self`
                    Some(reference) if reference.is_empty() || reference.starts_with('&') => {
                        format!("{reference}self")
                    }
                    _ => format!("self: {ty}"),
                }
            } else {
                format!("{name}: {ty}")
            }
        })
        .collect()
}

/// `<'a, T: Bound>`, without the synthetic parameters of `impl Trait` arguments.
fn generics(generics: Option<&Value>) -> String {
    let params: Vec<String> = generics
        .and_then(|g| g.get("params"))
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|param| {
            let name = param.get("name").and_then(Value::as_str)?;
            let kind = param.get("kind")?;
            if let Some(ty) = kind.get("type") {
                if matches!(ty.get("is_synthetic"), Some(Value::Bool(true))) {
                    return None;
                }
                let bounds = bounds(ty.get("bounds"));
                return Some(if bounds.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}: {bounds}")
                });
            }
            if let Some(konst) = kind.get("const") {
                let ty = konst.get("type").map(render).unwrap_or_else(unknown);
                return Some(format!("const {name}: {ty}"));
            }
            Some(name.to_owned())
        })
        .collect();
    if params.is_empty() {
        String::new()
    } else {
        format!("<{}>", params.join(", "))
    }
}

fn where_clauses(generics: Option<&Value>) -> String {
    let predicates: Vec<String> = generics
        .and_then(|g| g.get("where_predicates"))
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let bound = p.get("bound_predicate")?;
            let ty = bound.get("type").map(render).unwrap_or_else(unknown);
            Some(format!("{ty}: {}", bounds(bound.get("bounds"))))
        })
        .collect();
    if predicates.is_empty() {
        String::new()
    } else {
        format!(" where {}", predicates.join(", "))
    }
}

/// `Clone + Send + 'a`.
fn bounds(list: Option<&Value>) -> String {
    let parts: Vec<String> = list
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .map(|bound| {
            if let Some(trait_bound) = bound.get("trait_bound") {
                let modifier = match trait_bound.get("modifier").and_then(Value::as_str) {
                    Some("maybe") => "?",
                    _ => "",
                };
                let path = trait_bound
                    .get("trait")
                    .map(path_with_args)
                    .unwrap_or_else(unknown);
                format!("{modifier}{path}")
            } else if let Some(Value::String(lifetime)) = bound.get("outlives") {
                lifetime.clone()
            } else {
                unknown()
            }
        })
        .collect();
    parts.join(" + ")
}

/// The name of a `resolved_path`-like object (`path` in recent formats, `name` earlier): its
/// last segment, since the rest is however the source happened to spell it
/// (`crate::context::EncryptionContext` and `EncryptionContext` are one type).
fn path_of(path: &Value) -> String {
    let written = path
        .get("path")
        .or_else(|| path.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    written.rsplit("::").next().unwrap_or(written).to_owned()
}

fn path_with_args(path: &Value) -> String {
    let args = path.get("args").map(generic_args).unwrap_or_default();
    format!("{}{args}", path_of(path))
}

/// `<A, B = C>` or `(A) -> B`.
fn generic_args(args: &Value) -> String {
    if let Some(angle) = args.get("angle_bracketed") {
        let mut parts: Vec<String> = angle
            .get("args")
            .map(Value::as_array)
            .unwrap_or_default()
            .iter()
            .map(|arg| match arg {
                Value::String(infer) => infer.replace("infer", "_"),
                _ => {
                    if let Some(ty) = arg.get("type") {
                        render(ty)
                    } else if let Some(Value::String(lifetime)) = arg.get("lifetime") {
                        lifetime.clone()
                    } else if let Some(konst) = arg.get("const") {
                        konst
                            .get("expr")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_owned()
                    } else {
                        unknown()
                    }
                }
            })
            .collect();
        for constraint in angle
            .get("constraints")
            .map(Value::as_array)
            .unwrap_or_default()
        {
            let name = constraint
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let binding = constraint.get("binding");
            let text = match binding.and_then(|b| b.get("equality")) {
                Some(eq) => format!(
                    "{name} = {}",
                    eq.get("type").map(render).unwrap_or_else(unknown)
                ),
                None => format!(
                    "{name}: {}",
                    bounds(binding.and_then(|b| b.get("constraint")))
                ),
            };
            parts.push(text);
        }
        return if parts.is_empty() {
            String::new()
        } else {
            format!("<{}>", parts.join(", "))
        };
    }
    if let Some(paren) = args.get("parenthesized") {
        let inputs: Vec<String> = paren
            .get("inputs")
            .map(Value::as_array)
            .unwrap_or_default()
            .iter()
            .map(render)
            .collect();
        let output = match paren.get("output") {
            None | Some(Value::Null) => String::new(),
            Some(ty) => format!(" -> {}", render(ty)),
        };
        return format!("({}){output}", inputs.join(", "));
    }
    String::new()
}

/// A type as Rust source would write it.
fn render(ty: &Value) -> String {
    let Value::Object(members) = ty else {
        return unknown();
    };
    let Some((kind, body)) = members.first() else {
        return unknown();
    };
    match kind.as_str() {
        "resolved_path" => path_with_args(body),
        "generic" | "primitive" => body.as_str().unwrap_or("?").to_owned(),
        "borrowed_ref" => {
            let lifetime = match body.get("lifetime") {
                Some(Value::String(l)) => format!("{l} "),
                _ => String::new(),
            };
            let mutable = if matches!(body.get("is_mutable"), Some(Value::Bool(true))) {
                "mut "
            } else {
                ""
            };
            let inner = body.get("type").map(render).unwrap_or_else(unknown);
            format!("&{lifetime}{mutable}{inner}")
        }
        "raw_pointer" => {
            let mutable = if matches!(body.get("is_mutable"), Some(Value::Bool(true))) {
                "mut"
            } else {
                "const"
            };
            let inner = body.get("type").map(render).unwrap_or_else(unknown);
            format!("*{mutable} {inner}")
        }
        "tuple" => {
            let parts: Vec<String> = body.as_array().iter().map(render).collect();
            if parts.len() == 1 {
                format!("({},)", parts.join(""))
            } else {
                format!("({})", parts.join(", "))
            }
        }
        "slice" => format!("[{}]", render(body)),
        "array" => format!(
            "[{}; {}]",
            body.get("type").map(render).unwrap_or_else(unknown),
            body.get("len").and_then(Value::as_str).unwrap_or("?")
        ),
        "impl_trait" => format!("impl {}", bounds(Some(body))),
        "dyn_trait" => {
            let mut parts: Vec<String> = body
                .get("traits")
                .map(Value::as_array)
                .unwrap_or_default()
                .iter()
                .map(|t| t.get("trait").map(path_with_args).unwrap_or_else(unknown))
                .collect();
            if let Some(Value::String(lifetime)) = body.get("lifetime") {
                parts.push(lifetime.clone());
            }
            format!("dyn {}", parts.join(" + "))
        }
        "qualified_path" => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or("?");
            let self_type = body.get("self_type").map(render).unwrap_or_else(unknown);
            match body.get("trait") {
                Some(t @ Value::Object(_)) => {
                    format!("<{self_type} as {}>::{name}", path_with_args(t))
                }
                _ => format!("{self_type}::{name}"),
            }
        }
        "function_pointer" => {
            let sig = body.get("sig");
            let inputs: Vec<String> = sig
                .and_then(|s| s.get("inputs"))
                .map(Value::as_array)
                .unwrap_or_default()
                .iter()
                .map(|i| i.as_array().get(1).map(render).unwrap_or_else(unknown))
                .collect();
            let output = match sig.and_then(|s| s.get("output")) {
                None | Some(Value::Null) => String::new(),
                Some(o) => format!(" -> {}", render(o)),
            };
            format!("fn({}){output}", inputs.join(", "))
        }
        "infer" => "_".to_owned(),
        "pat" => body.get("type").map(render).unwrap_or_else(unknown),
        _ => unknown(),
    }
}

/// A line diff of two sorted listings: `-` lines only in `old`, `+` lines only in `new`.
pub(crate) fn diff(old: &str, new: &str) -> String {
    let old_lines: BTreeSet<&str> = old.lines().collect();
    let new_lines: BTreeSet<&str> = new.lines().collect();
    let mut out = String::new();
    for line in old_lines.difference(&new_lines) {
        out.push_str(&format!("  - {line}\n"));
    }
    for line in new_lines.difference(&old_lines) {
        out.push_str(&format!("  + {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small crate's rustdoc JSON (format 57), cut down to what the walk reads.
    const DOC: &str = r#"{"root": 10, "format_version": 57, "index": {
      "10": {"name": "demo", "visibility": "public", "attrs": [],
             "inner": {"module": {"is_crate": true, "items": [1, 2, 3, 4, 5]}}},
      "1": {"name": null, "visibility": "public", "attrs": [],
            "inner": {"use": {"source": "inner::S", "name": "S", "id": 20, "is_glob": false}}},
      "20": {"name": "S", "visibility": "public", "attrs": ["non_exhaustive"],
             "inner": {"struct": {"kind": {"plain": {"fields": [21], "has_stripped_fields": true}},
                       "generics": {"params": [], "where_predicates": []}, "impls": [22, 23, 24, 25]}}},
      "21": {"name": "a", "visibility": "public", "attrs": [], "inner": {"struct_field": {"primitive": "u8"}}},
      "22": {"name": null, "visibility": "default", "attrs": [],
             "inner": {"impl": {"trait": null, "items": [26, 27], "is_synthetic": false, "blanket_impl": null}}},
      "23": {"name": null, "visibility": "default", "attrs": [],
             "inner": {"impl": {"trait": {"path": "Send", "id": 90, "args": null}, "items": [], "is_synthetic": true, "blanket_impl": null}}},
      "24": {"name": null, "visibility": "default", "attrs": [],
             "inner": {"impl": {"trait": {"path": "Freeze", "id": 91, "args": null}, "items": [], "is_synthetic": true, "blanket_impl": null}}},
      "25": {"name": null, "visibility": "default", "attrs": [],
             "inner": {"impl": {"trait": {"path": "Into", "id": 92, "args": null}, "items": [], "is_synthetic": false, "blanket_impl": {"generic": "T"}}}},
      "26": {"name": "new", "visibility": "public", "attrs": [], "inner": {"function": {
             "sig": {"inputs": [["x", {"borrowed_ref": {"lifetime": null, "is_mutable": false, "type": {"primitive": "str"}}}]],
                     "output": {"resolved_path": {"path": "Result", "id": 93, "args": {"angle_bracketed": {"args": [{"type": {"generic": "Self"}}, {"type": {"resolved_path": {"path": "Error", "id": 94, "args": null}}}], "constraints": []}}}}},
             "generics": {"params": [], "where_predicates": []},
             "header": {"is_const": false, "is_unsafe": false, "is_async": true}, "has_body": true}}},
      "27": {"name": "hidden", "visibility": "crate", "attrs": [], "inner": {"function": {}}},
      "2": {"name": "T", "visibility": "public", "attrs": [], "inner": {"trait": {
             "items": [30], "generics": {"params": [], "where_predicates": []},
             "bounds": [{"trait_bound": {"trait": {"path": "Send", "id": 90, "args": null}, "generic_params": [], "modifier": "none"}}]}}},
      "30": {"name": "m", "visibility": "default", "attrs": [], "inner": {"function": {
             "sig": {"inputs": [["self", {"borrowed_ref": {"lifetime": null, "is_mutable": false, "type": {"generic": "Self"}}}]], "output": null},
             "generics": {"params": [], "where_predicates": []}, "header": {}, "has_body": true}}},
      "3": {"name": null, "visibility": "public", "attrs": [],
            "inner": {"use": {"source": "std::sync::Arc", "name": "Arc", "id": 95, "is_glob": false}}},
      "4": {"name": "E", "visibility": "public", "attrs": [], "inner": {"enum": {
             "generics": {"params": [], "where_predicates": []}, "variants": [40, 41], "impls": []}}},
      "40": {"name": "A", "visibility": "default", "attrs": [], "inner": {"variant": {"kind": "plain"}}},
      "41": {"name": "B", "visibility": "default", "attrs": [], "inner": {"variant": {"kind": {"tuple": [42]}}}},
      "42": {"name": "0", "visibility": "default", "attrs": [], "inner": {"struct_field": {"slice": {"primitive": "u8"}}}},
      "5": {"name": "private", "visibility": "crate", "attrs": [], "inner": {"module": {"items": []}}}
    }}"#;

    #[test]
    fn the_listing_walks_reexports_impls_and_signatures() {
        let library = Library {
            package: "demo-package".into(),
            crate_name: "demo".into(),
        };
        let listing = listing(&library, &crate::json::parse(DOC).unwrap()).unwrap();
        let lines: Vec<&str> = listing.lines().filter(|l| !l.starts_with("# ")).collect();
        assert_eq!(
            lines,
            [
                "use demo::Arc = std::sync::Arc",
                "enum demo::E",
                "variant demo::E::A",
                "variant demo::E::B([u8])",
                "impl Send for demo::S",
                "struct demo::S (private fields) #[non_exhaustive]",
                "field demo::S::a: u8",
                "async fn demo::S::new(x: &str) -> Result<Self, Error>",
                "trait demo::T: Send",
                "fn demo::T::m(&self) (provided)",
            ]
        );
        assert!(listing.starts_with("# The public API of demo-package (Rust path `demo`)"));
    }

    #[test]
    fn async_trait_methods_read_as_their_source() {
        let output = r#"{"resolved_path": {"path": "::core::pin::Pin", "args": {"angle_bracketed": {"args": [{"type":
            {"resolved_path": {"path": "Box", "args": {"angle_bracketed": {"args": [{"type": {"dyn_trait": {"traits": [
              {"trait": {"path": "::core::future::Future", "args": {"angle_bracketed": {"args": [], "constraints": [
                {"name": "Output", "args": null, "binding": {"equality": {"type": {"primitive": "bool"}}}}]}}}}],
              "lifetime": "'async_trait"}}}], "constraints": []}}}}}], "constraints": []}}}}"#;
        let body = format!(
            r#"{{"sig": {{"inputs": [["self", {{"borrowed_ref": {{"lifetime": "'life0", "is_mutable": false, "type": {{"generic": "Self"}}}}}}],
                                    ["key", {{"borrowed_ref": {{"lifetime": "'life1", "is_mutable": false, "type": {{"primitive": "str"}}}}}}]],
                         "output": {output}}},
                "generics": {{"params": [{{"name": "'life0", "kind": {{"lifetime": {{}}}}}}, {{"name": "'async_trait", "kind": {{"lifetime": {{}}}}}}],
                             "where_predicates": []}}, "header": {{}}}}"#
        );
        let body = crate::json::parse(&body).unwrap();
        assert_eq!(
            function("t::T::check", &body),
            "async fn t::T::check(&self, key: &str) -> bool"
        );
        assert_eq!(
            without_async_trait_lifetimes("key: &'life12 mut Data"),
            "key: &mut Data"
        );
    }

    #[test]
    fn the_diff_shows_removed_and_added_lines() {
        assert_eq!(diff("fn a\nfn b\n", "fn b\nfn c\n"), "  - fn a\n  + fn c\n");
    }
}
