//! `cargo xtask ci guides`: the integrator's first hour, tried as a new user would.
//!
//! Each guide's dependency lines (its first `toml` block) and its Rust code blocks become a
//! crate of their own under `target/guides/<name>/`, outside the workspace: the snippet goes
//! into `Cargo.toml` verbatim, with `[patch.crates-io]` pointing the `portal-backup-*`
//! packages it names at this checkout (so `version = "0.1"` of the guide resolves to the
//! code under test, under the published package name). The crate gets:
//!
//! * `src/lib.rs`: what a user copies into their crate, the visible lines of the guide's main
//!   example up to its first hidden line or its `main` (so `[dependencies]` alone must build
//!   it; dev-dependencies never reach a library);
//! * `examples/<name>.rs`: the whole main example, hidden lines shown, run with `cargo run`;
//! * `tests/block_<n>.rs`: every other Rust block, as rustdoc would run it.
//!
//! The workspace's `Cargo.lock` is copied in and the workspace's target directory is reused,
//! so the build costs CI only the crates whose features differ.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cmd::{self, Error, Result};

/// A guide whose snippets are built.
pub(crate) struct Guide {
    /// The scratch crate's name (and directory under `target/guides/`).
    pub(crate) name: &'static str,
    /// The guide, from the workspace root.
    pub(crate) markdown: &'static str,
    /// The name of the main example (`examples/<name>.rs`).
    pub(crate) example: &'static str,
    /// A line that only the main example's code block contains.
    pub(crate) example_marker: &'static str,
    /// Other documents whose `toml` block must be the guide's first lines (a shorter copy).
    pub(crate) copies: &'static [&'static str],
}

pub(crate) const GUIDES: &[Guide] = &[
    Guide {
        name: "guide-kms-backend",
        markdown: "crates/envelope/src/docs/writing_a_kms_backend.md",
        example: "acme_kms",
        example_marker: "impl KeyEncryptionKey for AcmeKms {",
        copies: &[],
    },
    Guide {
        name: "guide-store",
        markdown: "crates/storage/src/docs/writing_a_store.md",
        example: "kv_store",
        example_marker: "impl BackupStore for KvStore {",
        copies: &["docs/writing-a-store.md"],
    },
];

/// A fenced code block: its info string (`rust`, `toml`, `rust,ignore`) and its text.
#[derive(Debug, PartialEq)]
pub(crate) struct Block {
    pub(crate) info: String,
    pub(crate) code: String,
}

/// The fenced (```) code blocks of a markdown text, in order.
pub(crate) fn code_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    code: String::new(),
                });
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                blocks.extend(open.take());
            }
            (Some(block), _) => {
                block.code.push_str(line);
                block.code.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// A line rustdoc hides (`# code` or a lone `#`), with the hidden code; `##` escapes a `#`.
fn hidden(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed == "#" {
        Some("")
    } else {
        trimmed.strip_prefix("# ")
    }
}

/// The code as rustdoc compiles it: hidden lines shown, `##` unescaped.
pub(crate) fn unhide(code: &str) -> String {
    let mut out = String::new();
    for line in code.lines() {
        let indent = line.len().saturating_sub(line.trim_start().len());
        let (head, trimmed) = line.split_at(indent);
        if let Some(shown) = hidden(line) {
            out.push_str(shown);
        } else if let Some(rest) = trimmed.strip_prefix("##") {
            out.push_str(head);
            out.push('#');
            out.push_str(rest);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// What a user copies into their library: the visible lines up to the first hidden line or
/// the `main` function (with the attributes and doc comments above it).
pub(crate) fn library_part(code: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for line in code.lines() {
        if hidden(line).is_some() {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("fn main(") || trimmed.starts_with("async fn main(") {
            while lines.last().is_some_and(|l| {
                l.trim_start().starts_with("#[") || l.trim_start().starts_with("///")
            }) {
                lines.pop();
            }
            break;
        }
        lines.push(line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// A Rust block as an integration test: a block with its own `main` is items (the tests
/// are what its macros generate); otherwise its statements are one `#[test]`, as rustdoc
/// wraps them in a `main`.
pub(crate) fn test_file(code: &str) -> String {
    let code = unhide(code);
    if code.contains("fn main(") {
        format!("#![allow(dead_code)] // the block's `main`, which rustdoc would call\n\n{code}")
    } else {
        let mut out = String::from("#[test]\nfn guide_block() {\n");
        for line in code.lines() {
            let _ = writeln!(out, "    {line}");
        }
        out.push_str("}\n");
        out
    }
}

/// The `[patch.crates-io]` table pointing every package the snippet names
/// (`package = "<name>"`) at its directory in this checkout.
pub(crate) fn patches(snippet: &str, packages: &[(String, PathBuf)]) -> Result<String> {
    let mut out = String::from("[patch.crates-io]\n");
    let mut any = false;
    for (name, dir) in packages {
        if snippet.contains(&format!("package = \"{name}\"")) {
            let dir = dir
                .to_str()
                .ok_or_else(|| Error::msg(format!("{}: not a UTF-8 path", dir.display())))?;
            let _ = writeln!(out, "{name} = {{ path = {} }}", crate::json::quote(dir));
            any = true;
        }
    }
    if any {
        Ok(out)
    } else {
        Err(Error::msg(
            "the snippet names no package of this workspace by `package = \"…\"`",
        ))
    }
}

/// Every `toml` block of the README, the crate READMEs and `docs/` that depends on a
/// workspace library by its Rust name (`storage = …`) must name the published package
/// (`package = "portal-backup-storage"`): without it, `cargo` fetches another project's
/// crate of that name from crates.io. `libraries` maps each Rust name, with `-` for `_`
/// (`portal-api`), to its package.
pub(crate) fn dependency_lines(root: &Path, libraries: &[(String, String)]) -> Result {
    let mut files = vec![root.join("README.md")];
    for dir in [root.join("crates"), root.join("docs")] {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files.extend(GUIDES.iter().map(|g| root.join(g.markdown)));
    files.sort();
    let mut wrong = Vec::new();
    let mut checked = 0_usize;
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        for block in code_blocks(&text).iter().filter(|b| b.info == "toml") {
            for line in block.code.lines() {
                checked = checked.saturating_add(1);
                if let Some(problem) = dependency_line_problem(line, libraries) {
                    wrong.push(format!("{}: `{}`: {problem}", rel(root, file), line.trim()));
                }
            }
        }
    }
    if wrong.is_empty() {
        println!(
            "dependency lines: {checked} toml lines in {} documents name the published packages",
            files.len()
        );
        Ok(())
    } else {
        Err(Error::msg(format!(
            "dependency lines that would fetch the wrong crate:\n  {}",
            wrong.join("\n  ")
        )))
    }
}

/// What is wrong with one toml line, if it depends on a workspace library.
fn dependency_line_problem(line: &str, libraries: &[(String, String)]) -> Option<String> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    if let Some((_, package)) = libraries.iter().find(|(name, _)| name == key)
        && !value.contains(&format!("package = \"{package}\""))
    {
        return Some(format!("needs `package = \"{package}\"`"));
    }
    if let Some((_, rest)) = value.split_once("package = \"") {
        let named = rest.split('"').next().unwrap_or_default();
        if named.starts_with("portal-backup") && !libraries.iter().any(|(_, p)| p == named) {
            return Some(format!("no published library is named `{named}`"));
        }
    }
    None
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Writes one guide's scratch crate and builds, tests and runs it.
pub(crate) fn check(
    root: &Path,
    target_dir: &Path,
    guide: &Guide,
    packages: &[(String, PathBuf)],
) -> Result {
    let markdown = std::fs::read_to_string(root.join(guide.markdown))?;
    let blocks = code_blocks(&markdown);
    let snippet = blocks
        .iter()
        .find(|b| b.info == "toml")
        .ok_or_else(|| Error::msg(format!("{}: no toml block", guide.markdown)))?;
    for copy in guide.copies {
        let text = std::fs::read_to_string(root.join(copy))?;
        let shown = code_blocks(&text)
            .into_iter()
            .find(|b| b.info == "toml")
            .ok_or_else(|| Error::msg(format!("{copy}: no toml block")))?;
        if !snippet.code.starts_with(&shown.code) {
            return Err(Error::msg(format!(
                "{copy}: its dependency lines are not the first lines of {}'s:\n{}",
                guide.markdown, shown.code
            )));
        }
    }
    let rust: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.info == "rust" || b.info.is_empty())
        .collect();
    let (examples, others): (Vec<&Block>, Vec<&Block>) = rust
        .into_iter()
        .partition(|b| b.code.contains(guide.example_marker));
    let [example] = examples.as_slice() else {
        return Err(Error::msg(format!(
            "{}: expected one Rust block containing `{}`, found {}",
            guide.markdown,
            guide.example_marker,
            examples.len()
        )));
    };

    let dir = target_dir.join("guides").join(guide.name);
    // Start clean: a block removed from the guide must not linger as a test.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for sub in ["src", "examples", "tests"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let manifest = format!(
        "# Written by `cargo xtask ci guides` from {markdown}; not part of the workspace.\n\
         [package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [workspace]\n\n\
         # The guide's dependency lines, verbatim:\n{snippet}\n\
         {patches}",
        markdown = guide.markdown,
        name = guide.name,
        snippet = snippet.code,
        patches = patches(&snippet.code, packages)?,
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    std::fs::write(dir.join("src/lib.rs"), library_part(&example.code))?;
    std::fs::write(
        dir.join("examples").join(format!("{}.rs", guide.example)),
        unhide(&example.code),
    )?;
    for (index, block) in others.iter().enumerate() {
        std::fs::write(
            dir.join("tests")
                .join(format!("block_{}.rs", index.saturating_add(1))),
            test_file(&block.code),
        )?;
    }
    println!(
        "{}: {} (lib from its example, the example, {} more blocks as tests)",
        guide.name,
        dir.display(),
        others.len()
    );
    let cargo = || {
        cmd::cargo(&dir)
            .env("CARGO_TARGET_DIR", target_dir)
            .env("CARGO_INCREMENTAL", "0")
    };
    // `cargo test` builds the library from `[dependencies]` alone, then the tests and the
    // example with the dev-dependencies, and runs the tests.
    cargo().args(["test", "--quiet"]).run()?;
    cargo()
        .args(["run", "--quiet", "--example", guide.example])
        .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_blocks_keep_their_info_and_text() {
        let md =
            "text\n```toml\n[dependencies]\n```\nmore\n```rust\nlet x = 1;\n# hidden();\n```\n";
        assert_eq!(
            code_blocks(md),
            [
                Block {
                    info: "toml".into(),
                    code: "[dependencies]\n".into()
                },
                Block {
                    info: "rust".into(),
                    code: "let x = 1;\n# hidden();\n".into()
                },
            ]
        );
    }

    #[test]
    fn unhide_shows_hidden_lines_as_rustdoc_does() {
        let code = "visible();\n# hidden();\n#   indented();\n#\n## not_hidden\n#[derive(Debug)]\n";
        assert_eq!(
            unhide(code),
            "visible();\nhidden();\n  indented();\n\n# not_hidden\n#[derive(Debug)]\n"
        );
    }

    #[test]
    fn library_part_stops_at_hidden_code_or_main() {
        assert_eq!(
            library_part("use a;\npub fn f() {}\n# mod hidden {}\nafter();\n"),
            "use a;\npub fn f() {}\n"
        );
        assert_eq!(
            library_part("use a;\n/// Proof.\n#[tokio::main]\nasync fn main() {}\n"),
            "use a;\n"
        );
    }

    #[test]
    fn test_file_wraps_statements_but_not_items_with_main() {
        assert_eq!(
            test_file("let x = 1;\n"),
            "#[test]\nfn guide_block() {\n    let x = 1;\n}\n"
        );
        assert!(test_file("mod m {}\n# fn main() {}\n").ends_with("mod m {}\nfn main() {}\n"));
    }

    #[test]
    fn dependency_lines_must_name_the_published_package() {
        let libraries = [
            ("storage".to_owned(), "portal-backup-storage".to_owned()),
            ("portal-api".to_owned(), "portal-backup-api".to_owned()),
        ];
        let problem = |line: &str| dependency_line_problem(line, &libraries);
        assert_eq!(
            problem(r#"storage = { version = "0.1", default-features = false }"#).as_deref(),
            Some(r#"needs `package = "portal-backup-storage"`"#)
        );
        assert!(problem(r#"portal-api = "0.1""#).is_some());
        assert!(
            problem(r#"storage = { package = "portal-backup-storage", version = "0.1" }"#)
                .is_none()
        );
        assert!(problem(r#"tokio = { version = "1" }"#).is_none());
        assert!(problem(r##"# storage = "0.1""##).is_none());
        assert_eq!(
            problem(r#"st = { package = "portal-backup-store", version = "0.1" }"#).as_deref(),
            Some("no published library is named `portal-backup-store`")
        );
    }

    #[test]
    fn patches_name_only_the_packages_the_snippet_uses() {
        let packages = [
            (
                "portal-backup-storage".to_owned(),
                PathBuf::from("/w/crates/storage"),
            ),
            (
                "portal-backup-sim".to_owned(),
                PathBuf::from("/w/crates/portal-sim"),
            ),
        ];
        let snippet = "storage = { package = \"portal-backup-storage\", version = \"0.1\" }\n";
        assert_eq!(
            patches(snippet, &packages).unwrap(),
            "[patch.crates-io]\nportal-backup-storage = { path = \"/w/crates/storage\" }\n"
        );
        assert!(patches("serde = \"1\"\n", &packages).is_err());
    }
}
