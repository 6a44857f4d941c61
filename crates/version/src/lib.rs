//! What an ebs-snapper build is: its version (the workspace's, which a release's `MANIFEST.json`
//! and the deployed stack's `ebs-snapper:version` tag carry too) and the source commit it was
//! built from. `ebs-snapper --version` prints both and each function logs both when it starts.

/// The version, as in `Cargo.toml` (semantic versioning).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source commit (40 hex digits), or `unknown` for a build outside a git checkout.
pub const COMMIT: &str = env!("EBS_SNAPPER_COMMIT");

/// `VERSION (commit COMMIT)`: what `--version` prints after the program's name.
pub const DESCRIBED: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("EBS_SNAPPER_COMMIT"), ")");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_is_a_full_hash_or_unknown() {
        assert!(
            COMMIT == "unknown" || (COMMIT.len() == 40 && COMMIT.chars().all(|c| c.is_ascii_hexdigit())),
            "{COMMIT}"
        );
        assert_eq!(DESCRIBED, format!("{VERSION} (commit {COMMIT})"));
    }
}
