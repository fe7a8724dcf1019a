//! Rebuilds when a migration changes: `sqlx::migrate!` embeds the files at compile time, and
//! cargo does not track files a macro reads.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
