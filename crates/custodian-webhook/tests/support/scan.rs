//! Scans a directory for plaintext shares: the raw share, its JSON-escaped form, its
//! base64 forms (standard and URL-safe, padded or not; a window from the middle of the
//! encoding is the same for both paddings), and lower-case hex (as PostgreSQL prints bytea).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// Length of each needle.
const WINDOW: usize = 48;

/// What was found: the file, the index of the share, and the form.
#[derive(Debug)]
pub struct Hit {
    pub file: PathBuf,
    pub share: usize,
    pub form: &'static str,
}

fn middle(s: &[u8]) -> Option<&[u8]> {
    if s.len() < WINDOW {
        return None;
    }
    let start = (s.len() - WINDOW) / 2;
    s.get(start..start + WINDOW)
}

/// Every occurrence of any share, in any form, in any file under `dir`.
pub fn scan(dir: &Path, shares: &[String]) -> Vec<Hit> {
    let mut needles: Vec<(Vec<u8>, usize, &'static str)> = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        let escaped = serde_json::to_string(share).unwrap();
        let hex: String = share.bytes().map(|b| format!("{b:02x}")).collect();
        let forms: [(Vec<u8>, &'static str); 5] = [
            (share.as_bytes().to_vec(), "raw"),
            (escaped.into_bytes(), "json-escaped"),
            (STANDARD.encode(share).into_bytes(), "base64"),
            (URL_SAFE.encode(share).into_bytes(), "base64url"),
            (hex.into_bytes(), "hex"),
        ];
        for (bytes, form) in forms {
            if let Some(window) = middle(&bytes) {
                needles.push((window.to_vec(), i, form));
            }
        }
    }
    let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::new();
    for (n, (needle, _, _)) in needles.iter().enumerate() {
        by_prefix.entry(prefix(needle)).or_default().push(n);
    }
    let prefixes: HashSet<u64> = by_prefix.keys().copied().collect();
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if bytes.len() < WINDOW {
            continue;
        }
        for pos in 0..=bytes.len() - WINDOW {
            let p = prefix(&bytes[pos..]);
            if !prefixes.contains(&p) {
                continue;
            }
            for &n in &by_prefix[&p] {
                let (needle, share, form) = &needles[n];
                if bytes[pos..pos + WINDOW] == needle[..] {
                    hits.push(Hit {
                        file: path.clone(),
                        share: *share,
                        form,
                    });
                }
            }
        }
    }
    hits
}

fn prefix(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// Number of files under `dir`.
pub fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            n += 1;
        }
    }
    n
}

/// The scanner finds what it should (so a clean scan means something).
pub fn self_check() {
    let dir = tempfile::tempdir().unwrap();
    let share = super::share_like_portal("cl_scan");
    std::fs::write(dir.path().join("raw"), format!("xx{share}yy")).unwrap();
    std::fs::write(dir.path().join("b64"), STANDARD.encode(&share)).unwrap();
    let hex: String = share.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.path().join("hex"), format!("\\x{hex}")).unwrap();
    std::fs::write(
        dir.path().join("json"),
        serde_json::json!({ "s": share }).to_string(),
    )
    .unwrap();
    let hits = scan(dir.path(), &[share]);
    let forms: HashSet<&str> = hits.iter().map(|h| h.form).collect();
    assert!(
        forms.contains("raw")
            && forms.contains("base64")
            && forms.contains("json-escaped")
            && forms.contains("hex"),
        "{hits:?}"
    );
}
