//! A release (docs/reference/release.md): what its `MANIFEST.json` and `SHA256SUMS` say, and the
//! checks `ebs-snapper deploy --from DIR` makes before it uploads anything: every file as summed,
//! the manifest and the sums agreeing, the release's version the CLI's own, its architecture the
//! one the stack runs, and no downgrade unless asked for.
//!
//! Pure: the CLI reads the files and hashes them; this module decides.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The manifest's file name, at the top of a release directory and of each architecture's tree.
pub const MANIFEST: &str = "MANIFEST.json";
/// The checksum file's name (`sha256sum -c SHA256SUMS` reads it).
pub const SUMS: &str = "SHA256SUMS";
/// The stack tag that records the deployed version.
pub const VERSION_TAG: &str = "ebs-snapper:version";

/// An instruction set a release is built for: the name releases use, and the one Lambda uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Architecture {
    /// The name in a release (`x86_64`, `aarch64`), as in the tarballs' names.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Aarch64 => "aarch64",
        }
    }

    /// The name Lambda and the stack's `Architecture` parameter use (`x86_64`, `arm64`).
    pub fn lambda_name(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Aarch64 => "arm64",
        }
    }

    /// From either name.
    pub fn parse(text: &str) -> Option<Architecture> {
        match text {
            "x86_64" => Some(Architecture::X86_64),
            "aarch64" | "arm64" => Some(Architecture::Aarch64),
            _ => None,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One file of a release: its path under the manifest's directory, size and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// `MANIFEST.json`. An architecture's tree (what a tarball unpacks to) names its
/// `architecture`; the release directory above the trees names each tree in `architectures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub commit: String,
    /// The tools that built it (`rustc`, `cargo-lambda`, ...) and their versions.
    pub toolchain: BTreeMap<String, String>,
    /// `release`, or `dev` for the script's test build (debug binaries; never published).
    pub profile: String,
    /// The oldest glibc the binaries run on.
    pub glibc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// The directory of each architecture's tree (release directory only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub architectures: BTreeMap<Architecture, String>,
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, ReleaseError> {
        let manifest: Manifest = serde_json::from_str(text)
            .map_err(|e| ReleaseError::Manifest(format!("{MANIFEST} is not a manifest: {e}")))?;
        if manifest.name != "ebs-snapper" {
            return Err(ReleaseError::Manifest(format!("{MANIFEST} is of {:?}, not ebs-snapper", manifest.name)));
        }
        if manifest.architecture.is_some() != manifest.architectures.is_empty() {
            return Err(ReleaseError::Manifest(format!(
                "{MANIFEST} must name either its architecture (one tree) or its architectures' trees (a release directory)"
            )));
        }
        for f in &manifest.files {
            safe_path(&f.path)?;
        }
        for dir in manifest.architectures.values() {
            safe_path(dir)?;
        }
        Ok(manifest)
    }

    /// The manifest's entry for `path`.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// `SHA256SUMS`: `HASH  PATH` lines as `sha256sum` writes and `sha256sum -c` reads them (a `*`
/// before the path, binary mode, is the same). Paths must stay inside the directory.
pub fn parse_sums(text: &str) -> Result<BTreeMap<String, String>, ReleaseError> {
    let mut sums = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || ReleaseError::Sums(format!("line {} of {SUMS} is not \"SHA256  PATH\"", n + 1));
        let (hash, rest) = line.split_once(' ').ok_or_else(bad)?;
        let path = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*')).ok_or_else(bad)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || path.is_empty() {
            return Err(bad());
        }
        safe_path(path)?;
        if sums.insert(path.to_string(), hash.to_ascii_lowercase()).is_some() {
            return Err(ReleaseError::Sums(format!("{SUMS} lists {path} twice")));
        }
    }
    if sums.is_empty() {
        return Err(ReleaseError::Sums(format!("{SUMS} lists no file")));
    }
    Ok(sums)
}

/// A path in a release: relative, `/`-separated, with no `..` or empty part.
fn safe_path(path: &str) -> Result<(), ReleaseError> {
    if path.starts_with('/') || path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(ReleaseError::Sums(format!("{path:?} is not a path inside the release")));
    }
    Ok(())
}

/// What the CLI found on disk for a listed file: its size and SHA-256 (hex), or nothing.
pub type Found = Option<(u64, String)>;

/// The checks of one tree (or of the release directory's own files): every file `SHA256SUMS`
/// lists is there with that hash (the manifest is one of them), every file the manifest lists is
/// summed with the same hash and has its size, and each of `needed` (the zips, the template,
/// the function list) is in the manifest. `found` gives what is on disk for a listed path.
pub fn verify_tree(
    manifest: &Manifest,
    sums: &BTreeMap<String, String>,
    found: &dyn Fn(&str) -> Found,
    needed: &[String],
) -> Result<(), ReleaseError> {
    if !sums.contains_key(MANIFEST) {
        return Err(ReleaseError::Sums(format!("{SUMS} does not list {MANIFEST}")));
    }
    for (path, hash) in sums {
        match found(path) {
            None => return Err(ReleaseError::Missing { path: path.clone() }),
            Some((_, actual)) if actual != *hash => return Err(ReleaseError::Tampered { path: path.clone() }),
            Some(_) => {}
        }
    }
    for f in &manifest.files {
        match sums.get(&f.path) {
            None => return Err(ReleaseError::Sums(format!("{MANIFEST} lists {} but {SUMS} does not", f.path))),
            Some(hash) if *hash != f.sha256.to_ascii_lowercase() => {
                return Err(ReleaseError::Sums(format!("{MANIFEST} and {SUMS} disagree on {}", f.path)))
            }
            Some(_) => {}
        }
        if found(&f.path).is_some_and(|(size, _)| size != f.size) {
            return Err(ReleaseError::Tampered { path: f.path.clone() });
        }
    }
    for path in needed {
        if manifest.file(path).is_none() {
            return Err(ReleaseError::Incomplete { path: path.clone() });
        }
    }
    Ok(())
}

/// The release's version must be the CLI's own: the CLI deploys the templates and rules of its
/// version, and refuses to mix them with another version's code. (A `dev` release, the script's
/// test build, deploys too: deploy's report says which profile it is.)
pub fn check_version(manifest: &Manifest, cli_version: &str) -> Result<(), ReleaseError> {
    if manifest.version != cli_version {
        return Err(ReleaseError::Version { release: manifest.version.clone(), cli: cli_version.to_string() });
    }
    Ok(())
}

/// The architecture of the stack after this deploy: what `--parameter Architecture` asks, else
/// what the stack runs now, else (a new stack) `offered` when the release has one tree only,
/// else x86_64 (the template's default).
pub fn stack_architecture(
    asked: Option<&str>,
    deployed: Option<&str>,
    offered: &[Architecture],
) -> Result<Architecture, ReleaseError> {
    let parse = |text: &str| {
        Architecture::parse(text)
            .ok_or_else(|| ReleaseError::Manifest(format!("Architecture {text:?} is not x86_64 or arm64")))
    };
    match (asked, deployed, offered) {
        // The parameter takes Lambda's names only, as the template does.
        (Some(a), _, _) if a != "x86_64" && a != "arm64" => {
            Err(ReleaseError::Manifest(format!("--parameter Architecture={a}: x86_64 or arm64")))
        }
        (Some(a), _, _) => parse(a),
        (None, Some(d), _) => parse(d),
        (None, None, [only]) => Ok(*only),
        (None, None, _) => Ok(Architecture::X86_64),
    }
}

/// The architecture check: the release must have the tree the stack will run.
pub fn check_architecture(stack: Architecture, offered: &[Architecture], deployed: bool) -> Result<(), ReleaseError> {
    match offered.first() {
        None => Err(ReleaseError::Manifest(format!("{MANIFEST} names no architecture"))),
        Some(_) if offered.contains(&stack) => Ok(()),
        Some(&release) => Err(ReleaseError::Architecture { release, stack, deployed }),
    }
}

/// A deploy of `version` over a stack that records `deployed`: refused when it is older, unless
/// `allow_downgrade`. A stack with no version tag (deployed before versions were recorded, or
/// by hand) is no downgrade; a tag that is not a version is refused, since what it is cannot be
/// known.
pub fn check_downgrade(deployed: Option<&str>, version: &str, allow_downgrade: bool) -> Result<(), ReleaseError> {
    let Some(deployed) = deployed else { return Ok(()) };
    if allow_downgrade {
        return Ok(());
    }
    let ours = semver::Version::parse(version)
        .map_err(|e| ReleaseError::Manifest(format!("version {version:?} is not a semantic version: {e}")))?;
    let theirs = semver::Version::parse(deployed)
        .map_err(|_| ReleaseError::Downgrade { deployed: deployed.to_string(), version: version.to_string() })?;
    // Precedence: build metadata (`+ci.5`) does not make a version newer.
    if theirs.cmp_precedence(&ours) == std::cmp::Ordering::Greater {
        return Err(ReleaseError::Downgrade { deployed: deployed.to_string(), version: version.to_string() });
    }
    Ok(())
}

/// Why a release is not deployed. Each names the problem in one line; deploy adds where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Manifest(String),
    #[error("{0}")]
    Sums(String),
    #[error(
        "{path} is listed in SHA256SUMS but is not in the release as a regular file; unpack the whole release again"
    )]
    Missing { path: String },
    #[error("{path} does not match its SHA-256 in the release: it was changed or damaged; download the release again")]
    Tampered { path: String },
    #[error("{path} is not in the release's MANIFEST.json; this is not a whole release")]
    Incomplete { path: String },
    #[error(
        "the release is version {release} but this ebs-snapper is {cli}: deploy it with the ebs-snapper of the same \
         release (./ebs-snapper in its directory)"
    )]
    Version { release: String, cli: String },
    #[error(
        "the release is built for {release} but the stack {} {}: use the {}-linux release, or pass --parameter \
         Architecture={} to move the stack to the release's",
        if *deployed { "runs" } else { "would run" },
        stack.lambda_name(),
        stack.name(),
        release.lambda_name()
    )]
    Architecture { release: Architecture, stack: Architecture, deployed: bool },
    #[error(
        "the stack runs version {deployed}, newer than {version}: deploying this would downgrade it; pass \
         --allow-downgrade to roll back on purpose"
    )]
    Downgrade { deployed: String, version: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn manifest() -> Manifest {
        Manifest {
            name: "ebs-snapper".into(),
            version: "1.2.0".into(),
            commit: "c".into(),
            toolchain: BTreeMap::new(),
            profile: "release".into(),
            glibc: "2.17".into(),
            architecture: Some(Architecture::X86_64),
            architectures: BTreeMap::new(),
            files: vec![ManifestFile { path: "lambda/f/bootstrap.zip".into(), size: 3, sha256: A.into() }],
        }
    }

    fn sums() -> BTreeMap<String, String> {
        parse_sums(&format!("{A}  lambda/f/bootstrap.zip\n{B} *MANIFEST.json\n")).unwrap()
    }

    fn disk(path: &str) -> Found {
        match path {
            "lambda/f/bootstrap.zip" => Some((3, A.into())),
            "MANIFEST.json" => Some((10, B.into())),
            _ => None,
        }
    }

    #[test]
    fn a_whole_release_verifies_and_each_fault_is_named() {
        let needed = ["lambda/f/bootstrap.zip".to_string()];
        assert_eq!(verify_tree(&manifest(), &sums(), &disk, &needed), Ok(()));
        // A changed zip.
        let changed = |p: &str| if p == "MANIFEST.json" { disk(p) } else { Some((3, B.to_string())) };
        assert_eq!(
            verify_tree(&manifest(), &sums(), &changed, &needed),
            Err(ReleaseError::Tampered { path: "lambda/f/bootstrap.zip".into() })
        );
        // Same hash, other size: the manifest caught it.
        let longer = |p: &str| if p == "MANIFEST.json" { disk(p) } else { Some((4, A.to_string())) };
        assert!(matches!(verify_tree(&manifest(), &sums(), &longer, &needed), Err(ReleaseError::Tampered { .. })));
        // A file gone.
        let gone = |p: &str| if p == "MANIFEST.json" { disk(p) } else { None };
        assert!(matches!(verify_tree(&manifest(), &sums(), &gone, &needed), Err(ReleaseError::Missing { .. })));
        // The manifest not summed: it could say anything.
        let mut unsummed = sums();
        unsummed.remove(MANIFEST);
        assert!(matches!(verify_tree(&manifest(), &unsummed, &disk, &needed), Err(ReleaseError::Sums(_))));
        // The manifest and the sums disagree.
        let mut other = manifest();
        other.files[0].sha256 = B.into();
        assert!(matches!(verify_tree(&other, &sums(), &disk, &needed), Err(ReleaseError::Sums(_))));
        // A file the manifest lists that the sums do not.
        let mut unlisted = manifest();
        unlisted.files.push(ManifestFile { path: "lambda/g/bootstrap.zip".into(), size: 3, sha256: A.into() });
        assert!(matches!(verify_tree(&unlisted, &sums(), &disk, &needed), Err(ReleaseError::Sums(_))));
        // A needed file the release does not have.
        let more = ["lambda/g/bootstrap.zip".to_string()];
        assert!(matches!(verify_tree(&manifest(), &sums(), &disk, &more), Err(ReleaseError::Incomplete { .. })));
    }

    #[test]
    fn sums_are_read_as_sha256sum_writes_them_and_stay_inside() {
        assert_eq!(sums().len(), 2);
        for bad in [
            format!("{A} x"),
            format!("{}  x", &A[1..]),
            format!("{A}  ../x"),
            format!("{A}  /etc/passwd"),
            format!("{A}  a//b"),
            format!("{A}  ./x"),
            format!("{A}  a/./b"),
            format!("{A}  x\n{B}  x"),
            String::new(),
        ] {
            assert!(parse_sums(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_manifest_is_one_tree_or_a_directory_of_trees() {
        let text = serde_json::to_string(&manifest()).unwrap();
        assert_eq!(Manifest::parse(&text).unwrap(), manifest());
        let mut both = manifest();
        both.architectures.insert(Architecture::Aarch64, "t".into());
        assert!(Manifest::parse(&serde_json::to_string(&both).unwrap()).is_err());
        let mut escaping = manifest();
        escaping.files[0].path = "../../x".into();
        assert!(Manifest::parse(&serde_json::to_string(&escaping).unwrap()).is_err());
        assert!(Manifest::parse(&text.replace("\"ebs-snapper\"", "\"other\"")).is_err());
        for dir in ["../t", "a/./b", "/t"] {
            let mut outside = manifest();
            outside.architecture = None;
            outside.architectures.insert(Architecture::X86_64, dir.into());
            assert!(Manifest::parse(&serde_json::to_string(&outside).unwrap()).is_err(), "{dir}");
        }
    }

    #[test]
    fn the_version_must_be_the_clis() {
        assert_eq!(check_version(&manifest(), "1.2.0"), Ok(()));
        assert_eq!(
            check_version(&manifest(), "1.3.0"),
            Err(ReleaseError::Version { release: "1.2.0".into(), cli: "1.3.0".into() })
        );
        assert!(check_version(&manifest(), "1.2.0-rc.1").is_err());
    }

    #[test]
    fn the_stack_keeps_its_architecture_unless_asked() {
        use Architecture::*;
        assert_eq!(stack_architecture(None, Some("arm64"), &[X86_64, Aarch64]), Ok(Aarch64));
        assert_eq!(stack_architecture(Some("x86_64"), Some("arm64"), &[X86_64]), Ok(X86_64));
        assert_eq!(stack_architecture(None, None, &[Aarch64]), Ok(Aarch64));
        assert_eq!(stack_architecture(None, None, &[X86_64, Aarch64]), Ok(X86_64));
        assert!(stack_architecture(Some("mips"), None, &[X86_64]).is_err());
        assert!(stack_architecture(Some("aarch64"), None, &[Aarch64]).is_err(), "Lambda's names only");
        assert_eq!(check_architecture(Aarch64, &[X86_64, Aarch64], true), Ok(()));
        let refused = check_architecture(Aarch64, &[X86_64], true).unwrap_err();
        assert!(refused.to_string().contains("runs arm64"), "{refused}");
        assert!(refused.to_string().contains("--parameter Architecture=x86_64"), "{refused}");
    }

    #[test]
    fn an_older_version_over_a_newer_stack_is_refused_unless_allowed() {
        assert_eq!(check_downgrade(None, "1.0.0", false), Ok(()));
        assert_eq!(check_downgrade(Some("1.0.0"), "1.0.0", false), Ok(()));
        assert_eq!(check_downgrade(Some("0.9.9"), "1.0.0", false), Ok(()));
        assert!(matches!(check_downgrade(Some("1.0.1"), "1.0.0", false), Err(ReleaseError::Downgrade { .. })));
        // Semantic, not textual: 1.10 is newer than 1.9, and a release newer than its pre-release.
        assert!(check_downgrade(Some("1.10.0"), "1.9.0", false).is_err());
        assert_eq!(check_downgrade(Some("1.0.0-rc.1"), "1.0.0", false), Ok(()));
        assert!(check_downgrade(Some("1.0.0"), "1.0.0-rc.1", false).is_err());
        assert_eq!(check_downgrade(Some("1.0.1"), "1.0.0", true), Ok(()));
        assert!(check_downgrade(Some("not-a-version"), "1.0.0", false).is_err());
        assert_eq!(check_downgrade(Some("1.2.0+ci.5"), "1.2.0", false), Ok(()), "build metadata is no precedence");
    }
}
