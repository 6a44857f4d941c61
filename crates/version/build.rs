//! Finds the source commit this build is of and gives it to the crate as `EBS_SNAPPER_COMMIT`:
//! the variable of that name when it is set (a release sets it), else the checkout's `HEAD`
//! (`git rev-parse`), else the commit `cargo package` recorded in `.cargo_vcs_info.json` (a
//! crate built from crates.io), else `unknown`. Only this small crate reruns when the commit
//! changes; the crates that print or log it are rebuilt above it, the SDK never.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EBS_SNAPPER_COMMIT");
    let commit = std::env::var("EBS_SNAPPER_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_head)
        .or_else(packaged_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=EBS_SNAPPER_COMMIT={}", commit.trim());
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// The checkout's `HEAD`, and what makes the build script run again when it moves: `HEAD`
/// itself, the branch it names, and the packed refs.
fn git_head() -> Option<String> {
    let commit = git(&["rev-parse", "--verify", "HEAD"])?;
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}

/// The commit `cargo package` wrote into the crate (`{"git": {"sha1": "..."}}`).
fn packaged_commit() -> Option<String> {
    let text = std::fs::read_to_string(".cargo_vcs_info.json").ok()?;
    let after = &text[text.find("\"sha1\"")? + 6..];
    let start = after.find('"')? + 1;
    let end = start + after[start..].find('"')?;
    let sha = &after[start..end];
    (!sha.is_empty() && sha.chars().all(|c| c.is_ascii_hexdigit())).then(|| sha.to_string())
}
