//! `deploy --from DIR`: a release directory (`dist/ebs-snapper-VERSION`, with a tree per
//! architecture) or one architecture's tree (an unpacked tarball). Every tree is verified
//! against its `SHA256SUMS` and `MANIFEST.json` and its version checked against the CLI's
//! before any AWS call; the tree the stack runs is chosen once the stack's architecture is
//! known. The rules are `ebs_snapper_core::release`; this module reads and hashes the files.

use std::collections::BTreeMap;

use ebs_snapper_core::release::{
    check_architecture, check_version, parse_sums, stack_architecture, verify_tree, Architecture, Found, Manifest,
    ReleaseError, MANIFEST, SUMS,
};

use super::*;

/// A verified release: the tree of each architecture it has.
#[derive(Debug, Clone)]
pub struct Release {
    pub dir: PathBuf,
    pub version: String,
    pub profile: String,
    trees: BTreeMap<Architecture, Tree>,
}

/// One architecture's verified tree: its zips, template and function list.
#[derive(Debug, Clone)]
struct Tree {
    dir: PathBuf,
    template: Document,
    functions: Document,
    zip_sums: BTreeMap<String, String>,
}

/// What deploy uploads: the zips' folder, the template, the function list, and the
/// architecture the zips are built for (when known).
#[derive(Debug, Clone)]
pub struct Code {
    pub artifacts: PathBuf,
    pub template: Document,
    pub functions: Document,
    pub architecture: Option<String>,
    /// A release's SHA-256 (hex) of each zip, by binary: the bytes deploy uploads are hashed
    /// again and must match (they are read after the release was verified).
    pub zip_sums: BTreeMap<String, String>,
}

/// Where a release keeps the zips, under a tree: `lambda/<function>/bootstrap.zip`.
pub const ZIPS: &str = "lambda";
/// The template and the function list, under a tree.
pub const TEMPLATE_FILE: &str = "cloudformation/ebs-snapper.json";
pub const FUNCTIONS_FILE: &str = "lambda.json";

impl Release {
    /// Reads and verifies the release in `dir` (every tree in it), for a CLI of `cli_version`.
    pub fn open(dir: &Path, cli_version: &str) -> Result<Release, DeployError> {
        let fail = |e: ReleaseError| DeployError::Release { dir: dir.to_path_buf(), reason: e.to_string() };
        let manifest = verified(dir).map_err(fail)?;
        check_version(&manifest, cli_version).map_err(fail)?;
        let mut trees = BTreeMap::new();
        match manifest.architecture {
            Some(arch) => {
                trees.insert(arch, Tree::open(dir, &manifest).map_err(fail)?);
            }
            None => {
                for (arch, sub) in &manifest.architectures {
                    // The directory's own sums cover each tree's sums, so a tree changed and
                    // summed again is caught by the sums published with the release.
                    if manifest.file(&format!("{sub}/{SUMS}")).is_none() {
                        return Err(fail(ReleaseError::Incomplete { path: format!("{sub}/{SUMS}") }));
                    }
                    let tree_dir = dir.join(sub);
                    let fail = |e: ReleaseError| DeployError::Release { dir: tree_dir.clone(), reason: e.to_string() };
                    let tree_manifest = verified(&tree_dir).map_err(fail)?;
                    if tree_manifest.architecture != Some(*arch)
                        || tree_manifest.version != manifest.version
                        || tree_manifest.commit != manifest.commit
                    {
                        return Err(fail(ReleaseError::Manifest(format!(
                            "{MANIFEST} is not the {arch} tree of release {} ({})",
                            manifest.version, manifest.commit
                        ))));
                    }
                    trees.insert(*arch, Tree::open(&tree_dir, &tree_manifest).map_err(fail)?);
                }
            }
        }
        Ok(Release { dir: dir.to_path_buf(), version: manifest.version, profile: manifest.profile, trees })
    }

    /// The code for a stack that runs (or will run) `stack`: `asked` is `--parameter
    /// Architecture`, `deployed` the stack's parameter now (None for a new stack).
    pub fn code(&self, asked: Option<&str>, deployed: Option<&str>) -> Result<Code, DeployError> {
        let fail = |e: ReleaseError| DeployError::Release { dir: self.dir.clone(), reason: e.to_string() };
        let offered: Vec<Architecture> = self.trees.keys().copied().collect();
        let arch = stack_architecture(asked, deployed, &offered).map_err(fail)?;
        check_architecture(arch, &offered, asked.is_none() && deployed.is_some()).map_err(fail)?;
        let tree = self.trees.get(&arch).ok_or_else(|| fail(ReleaseError::Manifest(format!("no {arch} tree"))))?;
        Ok(Code {
            artifacts: tree.dir.join(ZIPS),
            template: tree.template.clone(),
            functions: tree.functions.clone(),
            architecture: Some(arch.lambda_name().to_string()),
            zip_sums: tree.zip_sums.clone(),
        })
    }
}

impl Tree {
    /// The template and function list of a verified tree, with every zip its list names in the
    /// manifest.
    fn open(dir: &Path, manifest: &Manifest) -> Result<Tree, ReleaseError> {
        // Read once, and hashed as read: what deploy uses is what was verified.
        let read = |name: &str| {
            let bytes =
                read_inside(dir, name).map_err(|e| ReleaseError::Manifest(format!("cannot read {name}: {e}")))?;
            match manifest.file(name) {
                Some(f) if f.sha256.eq_ignore_ascii_case(&hex(&bytes)) => {}
                Some(_) => return Err(ReleaseError::Tampered { path: name.to_string() }),
                None => return Err(ReleaseError::Incomplete { path: name.to_string() }),
            }
            String::from_utf8(bytes)
                .map_err(|_| ReleaseError::Manifest(format!("{name} is not text")))
                .map(|text| Document { name: file_name(name), text })
        };
        let functions = read(FUNCTIONS_FILE)?;
        let template = read(TEMPLATE_FILE)?;
        // Every file of the manifest was found as summed when it was read (`verified`): what
        // is left is whether the tree has every function's zip, whose sum deploy checks again
        // on the bytes it uploads.
        let list = FunctionList::parse(&functions.text).map_err(ReleaseError::Manifest)?;
        let mut zip_sums = BTreeMap::new();
        for f in &list.functions {
            let path = format!("{ZIPS}/{}/bootstrap.zip", f.binary);
            let entry = manifest.file(&path).ok_or(ReleaseError::Incomplete { path })?;
            zip_sums.insert(f.binary.clone(), entry.sha256.to_ascii_lowercase());
        }
        Ok(Tree { dir: dir.to_path_buf(), template, functions, zip_sums })
    }
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The manifest of `dir`, once every file its `SHA256SUMS` lists has been hashed and found as
/// summed, and the manifest agrees with the sums.
fn verified(dir: &Path) -> Result<Manifest, ReleaseError> {
    let sums_text = std::fs::read_to_string(dir.join(SUMS)).map_err(|e| {
        ReleaseError::Manifest(format!(
            "cannot read {SUMS}: {e} (give the directory of a release, or of an unpacked release tarball)"
        ))
    })?;
    let sums = parse_sums(&sums_text)?;
    // The manifest is parsed from the bytes that are hashed.
    let manifest_bytes =
        read_inside(dir, MANIFEST).map_err(|e| ReleaseError::Manifest(format!("cannot read {MANIFEST}: {e}")))?;
    let manifest_text =
        std::str::from_utf8(&manifest_bytes).map_err(|_| ReleaseError::Manifest(format!("{MANIFEST} is not text")))?;
    let manifest = Manifest::parse(manifest_text)?;
    // Each file is hashed once, whether the sums or the manifest ask.
    let paths = sums.keys().chain(manifest.files.iter().map(|f| &f.path)).filter(|p| p.as_str() != MANIFEST);
    let mut found: BTreeMap<&str, Found> =
        paths.map(|p| (p.as_str(), read_inside(dir, p).ok().map(|b| (b.len() as u64, hex(&b))))).collect();
    found.insert(MANIFEST, Some((manifest_bytes.len() as u64, hex(&manifest_bytes))));
    verify_tree(&manifest, &sums, &|path| found.get(path).cloned().flatten(), &[])?;
    Ok(manifest)
}

/// SHA-256 in hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of `rel` under `dir`, a regular file reached through no symbolic link: a release
/// is its own files, and a link could point anywhere (another user's directory, a device).
fn read_inside(dir: &Path, rel: &str) -> std::io::Result<Vec<u8>> {
    let refuse = |what: &str| std::io::Error::other(format!("{rel}: {what} (a release holds its own files)"));
    let mut at = dir.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        let meta = std::fs::symlink_metadata(&at)?;
        if meta.file_type().is_symlink() {
            return Err(refuse("a symbolic link"));
        }
    }
    if !std::fs::symlink_metadata(&at)?.is_file() {
        return Err(refuse("not a regular file"));
    }
    std::fs::read(&at)
}
