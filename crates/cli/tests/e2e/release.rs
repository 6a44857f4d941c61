//! `ebs-snapper deploy --from DIR` into the AWS emulator: a release (a tree per architecture, as
//! scripts/release.sh writes it) is verified before anything is uploaded, must be the CLI's
//! version and the stack's architecture, never downgrades a stack unasked, and leaves its version
//! on the stack as a tag and an output. The script itself is tested by scripts/test_release.sh.

use crate::support;

use std::path::Path;

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use support::{root, text, Account};

const FUNCTIONS: [&str; 5] = ["fanout-snapshot", "create-snapshot", "fanout-clean", "clean-snapshot", "replication"];
const VERSION: &str = ebs_snapper_version::VERSION;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir` (but the manifest and the sums), as release paths, sorted.
fn files(dir: &Path, skip: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
            if skip.iter().any(|s| rel == *s || rel.starts_with(&format!("{s}/"))) {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Writes `dir`'s MANIFEST.json and SHA256SUMS as scripts/release.sh does: a tree names its
/// architecture, a release directory its trees.
fn seal(dir: &Path, version: &str, arch: Option<&str>, trees: &[(&str, &str)]) {
    let subdirs: Vec<&str> = trees.iter().map(|(_, d)| *d).collect();
    let mut skip = vec!["MANIFEST.json", "SHA256SUMS"];
    skip.extend(&subdirs);
    let mut paths = files(dir, &skip);
    // The directory's sums cover each tree's sums.
    paths.extend(subdirs.iter().map(|d| format!("{d}/SHA256SUMS")));
    paths.sort();
    let entries: Vec<_> = paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(dir.join(p)).unwrap();
            json!({"path": p, "size": bytes.len(), "sha256": hex(&bytes)})
        })
        .collect();
    let mut manifest = json!({
        "name": "ebs-snapper", "version": version, "commit": "0123456789abcdef0123456789abcdef01234567",
        "toolchain": {"rustc": "test"}, "profile": "release", "glibc": "2.17", "files": entries,
    });
    match arch {
        Some(a) => manifest["architecture"] = json!(a),
        None => {
            manifest["architectures"] =
                json!(trees.iter().map(|(a, d)| (a.to_string(), json!(d))).collect::<serde_json::Map<_, _>>())
        }
    }
    std::fs::write(dir.join("MANIFEST.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let mut sums = String::new();
    let mut summed = paths.clone();
    summed.push("MANIFEST.json".into());
    summed.sort();
    for p in summed {
        sums.push_str(&format!("{}  {p}\n", hex(&std::fs::read(dir.join(&p)).unwrap())));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

/// One architecture's tree, with stand-in zips (deploy does not look inside them) and the
/// project's own template and function list.
fn tree(dir: &Path, version: &str, arch: &str) {
    for f in FUNCTIONS {
        std::fs::create_dir_all(dir.join("lambda").join(f)).unwrap();
        std::fs::write(dir.join("lambda").join(f).join("bootstrap.zip"), format!("zip of {f} {arch} {version}"))
            .unwrap();
    }
    std::fs::create_dir_all(dir.join("cloudformation")).unwrap();
    std::fs::copy(root().join("cloudformation/ebs-snapper.json"), dir.join("cloudformation/ebs-snapper.json")).unwrap();
    std::fs::copy(root().join("lambda.json"), dir.join("lambda.json")).unwrap();
    std::fs::write(dir.join("ebs-snapper"), format!("the CLI for {arch}")).unwrap();
    seal(dir, version, Some(arch), &[]);
}

fn release_tree(arch: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), VERSION, arch);
    dir
}

fn deploy(acct: &Account, from: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = acct
        .cli()
        .args(["-t", "us-east-1", "deploy", "--poll-ms", "100", "--from"])
        .arg(from)
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn stack(acct: &Account) -> aws_sdk_cloudformation::types::Stack {
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk("us-east-1").await);
    let out = cfn.describe_stacks().stack_name(format!("ebs-snapper-{}", acct.id)).send().await.unwrap();
    out.stacks()[0].clone()
}

fn tag(stack: &aws_sdk_cloudformation::types::Stack, key: &str) -> Option<String> {
    stack.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value().map(str::to_string))
}

fn output(stack: &aws_sdk_cloudformation::types::Stack, key: &str) -> Option<String> {
    stack.outputs().iter().find(|o| o.output_key() == Some(key)).and_then(|o| o.output_value().map(str::to_string))
}

fn parameter(stack: &aws_sdk_cloudformation::types::Stack, key: &str) -> Option<String> {
    stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some(key))
        .and_then(|p| p.parameter_value().map(str::to_string))
}

/// The SHA-256 (base64) of a function's deployed code, as Lambda reports it.
async fn code_sha(acct: &Account, function: &str) -> String {
    let lambda = aws_sdk_lambda::Client::new(&acct.sdk("us-east-1").await);
    let got = lambda.get_function().function_name(format!("ebs-snapper-{}-{function}", acct.id)).send().await.unwrap();
    got.configuration().unwrap().code_sha256().unwrap().to_string()
}

fn sha_b64(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// What the account was asked since `before`, but the reads that come before any change.
fn changes_since(acct: &Account, before: usize) -> Vec<String> {
    acct.recorded()
        .into_iter()
        .skip(before)
        .map(|r| r.action)
        .filter(|a| !matches!(a.as_str(), "GetCallerIdentity" | "DescribeStacks"))
        .collect()
}

#[tokio::test]
async fn a_release_deploys_its_own_code_and_the_stack_records_its_version() {
    let acct = Account::new().await;
    let release = release_tree("x86_64");
    let (code, out, err) = deploy(&acct, release.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with(&format!("release {VERSION} (x86_64) verified: ")), "{out}");
    assert!(out.contains(&format!("stack ebs-snapper-{}: CREATE_COMPLETE", acct.id)), "{out}");
    let s = stack(&acct).await;
    assert_eq!(tag(&s, "ebs-snapper:version").as_deref(), Some(VERSION));
    assert_eq!(output(&s, "Version").as_deref(), Some(VERSION));
    assert_eq!(parameter(&s, "Architecture").as_deref(), Some("x86_64"));
    // The code is the release's zips, each as summed.
    for f in FUNCTIONS {
        assert_eq!(
            code_sha(&acct, f).await,
            sha_b64(&release.path().join("lambda").join(f).join("bootstrap.zip")),
            "{f}"
        );
    }
    // From inside the unpacked release, as README says, with the release's own files.
    let out =
        acct.cli().current_dir(release.path()).args(["deploy", "--poll-ms", "100", "--from", "."]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("code unchanged"), "{}", text(&out.stdout));
}

/// A release that is not whole and unchanged, or of another version, is refused in one line
/// before any AWS call: nothing is uploaded, no stack is made.
#[tokio::test]
async fn a_changed_incomplete_or_other_version_release_is_refused_before_any_call() {
    let acct = Account::new().await;
    // One call of the account's own, so that "no call since" is read from a recording that works.
    aws_sdk_sts::Client::new(&acct.sdk("us-east-1").await).get_caller_identity().send().await.unwrap();
    type Spoil = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Spoil, String)> = vec![
        (
            "a zip changed after it was summed (its size kept)",
            Box::new(|d: &Path| {
                let zip = d.join("lambda/clean-snapshot/bootstrap.zip");
                let mut bytes = std::fs::read(&zip).unwrap();
                bytes[0] ^= 1;
                std::fs::write(zip, bytes).unwrap();
            }),
            "lambda/clean-snapshot/bootstrap.zip does not match its SHA-256 in the release".to_string(),
        ),
        (
            "a zip changed and summed again, the manifest left",
            Box::new(|d: &Path| {
                std::fs::write(d.join("lambda/replication/bootstrap.zip"), "evil").unwrap();
                let sums = std::fs::read_to_string(d.join("SHA256SUMS")).unwrap();
                let sums: String = sums
                    .lines()
                    .map(|l| {
                        if l.ends_with("lambda/replication/bootstrap.zip") {
                            format!("{}  lambda/replication/bootstrap.zip\n", hex(b"evil"))
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect();
                std::fs::write(d.join("SHA256SUMS"), sums).unwrap();
            }),
            "MANIFEST.json and SHA256SUMS disagree on lambda/replication/bootstrap.zip".to_string(),
        ),
        (
            "a zip grown after it was summed",
            Box::new(|d: &Path| {
                let zip = d.join("lambda/create-snapshot/bootstrap.zip");
                let mut bytes = std::fs::read(&zip).unwrap();
                bytes.extend_from_slice(b"more");
                std::fs::write(zip, bytes).unwrap();
            }),
            "lambda/create-snapshot/bootstrap.zip does not match its SHA-256 in the release".to_string(),
        ),
        (
            "a zip removed",
            Box::new(|d: &Path| std::fs::remove_file(d.join("lambda/fanout-clean/bootstrap.zip")).unwrap()),
            "lambda/fanout-clean/bootstrap.zip is listed in SHA256SUMS but is not in the release as a regular file"
                .to_string(),
        ),
        (
            "a zip left out of the release",
            Box::new(|d: &Path| {
                std::fs::remove_dir_all(d.join("lambda/fanout-clean")).unwrap();
                seal(d, VERSION, Some("x86_64"), &[]);
            }),
            "lambda/fanout-clean/bootstrap.zip is not in the release's MANIFEST.json".to_string(),
        ),
        (
            "another version",
            Box::new(|d: &Path| seal(d, "9.9.9", Some("x86_64"), &[])),
            format!("the release is version 9.9.9 but this ebs-snapper is {VERSION}"),
        ),
        (
            "a zip that is a link to a file outside the release",
            Box::new(|d: &Path| {
                let outside = d.with_extension("outside");
                std::fs::create_dir_all(&outside).unwrap();
                let outside = outside.join("bootstrap.zip");
                std::fs::copy(d.join("lambda/fanout-snapshot/bootstrap.zip"), &outside).unwrap();
                std::fs::remove_file(d.join("lambda/fanout-snapshot/bootstrap.zip")).unwrap();
                std::os::unix::fs::symlink(&outside, d.join("lambda/fanout-snapshot/bootstrap.zip")).unwrap();
            }),
            "lambda/fanout-snapshot/bootstrap.zip is listed in SHA256SUMS but is not in the release as a regular file"
                .to_string(),
        ),
        (
            "a function's directory that is a link to one outside the release",
            Box::new(|d: &Path| {
                let outside = d.with_extension("outside");
                std::fs::create_dir_all(&outside).unwrap();
                std::fs::rename(d.join("lambda/create-snapshot"), outside.join("create-snapshot")).unwrap();
                std::os::unix::fs::symlink(outside.join("create-snapshot"), d.join("lambda/create-snapshot")).unwrap();
            }),
            "lambda/create-snapshot/bootstrap.zip is listed in SHA256SUMS but is not in the release as a regular file"
                .to_string(),
        ),
        (
            "not a release",
            Box::new(|d: &Path| std::fs::remove_file(d.join("SHA256SUMS")).unwrap()),
            "cannot read SHA256SUMS".to_string(),
        ),
    ];
    for (what, spoil, expected) in cases {
        let release = release_tree("x86_64");
        spoil(release.path());
        let before = acct.recorded().len();
        let (code, out, err) = deploy(&acct, release.path(), &[]);
        assert_eq!(code, 1, "{what}: {out}\n{err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.contains(&expected) && err.contains("nothing was uploaded"), "{what}: {err}");
        assert!(out.is_empty(), "{what}: {out}");
        let calls: Vec<String> = acct.recorded().into_iter().skip(before).map(|r| r.action).collect();
        assert!(calls.is_empty(), "{what}: no AWS call at all: {calls:?}");
        // Where a case put files outside the release (beside its directory, its own).
        let _ = std::fs::remove_dir_all(release.path().with_extension("outside"));
    }
}

/// The stack keeps the architecture it runs: a release for another is refused (before any
/// upload) unless `--parameter Architecture` moves the stack; a release directory with both
/// trees gives the stack the one it runs.
#[tokio::test]
async fn a_release_for_another_architecture_is_refused_unless_the_stack_is_moved() {
    let acct = Account::new().await;
    let x86 = release_tree("x86_64");
    let (code, out, err) = deploy(&acct, x86.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    let arm = release_tree("aarch64");
    let before = acct.recorded().len();
    let (code, out, err) = deploy(&acct, arm.path(), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the release is built for aarch64 but the stack runs x86_64")
            && err.contains("--parameter Architecture=arm64"),
        "{err}"
    );
    assert_eq!(changes_since(&acct, before), Vec::<String>::new(), "nothing uploaded or changed");
    assert_eq!(
        code_sha(&acct, "clean-snapshot").await,
        sha_b64(&x86.path().join("lambda/clean-snapshot/bootstrap.zip"))
    );

    // Asked for: the stack moves to arm64 with the release's code.
    let (code, out, err) = deploy(&acct, arm.path(), &["--parameter", "Architecture=arm64"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(parameter(&stack(&acct).await, "Architecture").as_deref(), Some("arm64"));
    assert_eq!(
        code_sha(&acct, "clean-snapshot").await,
        sha_b64(&arm.path().join("lambda/clean-snapshot/bootstrap.zip"))
    );

    // A release directory with both trees: the stack's (arm64) is deployed, the other is not.
    let both = tempfile::tempdir().unwrap();
    for (arch, sub) in [("x86_64", "t-x86_64"), ("aarch64", "t-aarch64")] {
        std::fs::create_dir_all(both.path().join(sub)).unwrap();
        tree(&both.path().join(sub), VERSION, arch);
    }
    std::fs::write(both.path().join("note.txt"), "the directory's own file").unwrap();
    seal(both.path(), VERSION, None, &[("x86_64", "t-x86_64"), ("aarch64", "t-aarch64")]);
    // Both trees are verified, the one not deployed too.
    std::fs::write(both.path().join("t-x86_64/lambda/fanout-snapshot/bootstrap.zip"), "evil").unwrap();
    let (code, _, err) = deploy(&acct, both.path(), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("t-x86_64") && err.contains("does not match its SHA-256"), "{err}");
    // A tree changed and summed again: the directory's sums catch it.
    seal(&both.path().join("t-x86_64"), VERSION, Some("x86_64"), &[]);
    let (code, _, err) = deploy(&acct, both.path(), &[]);
    assert_eq!(code, 1, "the directory was sealed before the tree changed");
    assert!(err.contains("t-x86_64/SHA256SUMS does not match its SHA-256"), "{err}");
    tree(&both.path().join("t-x86_64"), VERSION, "x86_64");
    // Trees named for each other's architecture: refused, whichever the stack runs.
    seal(both.path(), VERSION, None, &[("x86_64", "t-aarch64"), ("aarch64", "t-x86_64")]);
    let (code, _, err) = deploy(&acct, both.path(), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not the aarch64 tree") || err.contains("is not the x86_64 tree"), "{err}");
    seal(both.path(), VERSION, None, &[("x86_64", "t-x86_64"), ("aarch64", "t-aarch64")]);
    let (code, out, err) = deploy(&acct, both.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with(&format!("release {VERSION} (arm64) verified")), "{out}");
    assert_eq!(
        code_sha(&acct, "clean-snapshot").await,
        sha_b64(&both.path().join("t-aarch64/lambda/clean-snapshot/bootstrap.zip"))
    );
}

/// A stack that runs a newer version is not downgraded unless asked (`--allow-downgrade`), and
/// the refusal changes nothing.
#[tokio::test]
async fn an_older_release_over_a_newer_stack_is_refused_unless_allowed() {
    // The stack as a newer release left it.
    let (acct, _) = deployed_then_marked("99.0.0").await;
    let newer_code = other_code();
    let before = acct.recorded().len();
    let (code, out, err) = deploy(&acct, newer_code.path(), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("the stack runs version 99.0.0, newer than {VERSION}"))
            && err.contains("--allow-downgrade"),
        "{err}"
    );
    assert_eq!(changes_since(&acct, before), Vec::<String>::new(), "nothing uploaded or changed");

    let (code, out, err) = deploy(&acct, newer_code.path(), &["--allow-downgrade"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let s = stack(&acct).await;
    assert_eq!(tag(&s, "ebs-snapper:version").as_deref(), Some(VERSION));
    assert_eq!(output(&s, "Version").as_deref(), Some(VERSION));
    assert_eq!(
        code_sha(&acct, "create-snapshot").await,
        sha_b64(&newer_code.path().join("lambda/create-snapshot/bootstrap.zip"))
    );
}

/// A CLI away from a source checkout (installed, or a release's) has nothing to build from: it
/// says to deploy a release, in one line, and does nothing. It names no build directory of its
/// own (a release's CLI carries none).
#[tokio::test]
async fn a_cli_away_from_its_checkout_asks_for_a_release() {
    let acct = Account::new().await;
    let away = tempfile::tempdir().unwrap();
    let cli = away.path().join("ebs-snapper");
    std::fs::copy(assert_cmd::cargo::cargo_bin("ebs-snapper"), &cli).unwrap();
    let mut cmd = std::process::Command::new(&cli);
    for (k, v) in acct.credential_env() {
        cmd.env(k, v);
    }
    let out = cmd.current_dir(away.path()).args(["deploy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not in a source checkout") && err.contains("--from DIR"), "{err}");
    let binary = std::fs::read(&cli).unwrap();
    let checkout = root().to_string_lossy().into_owned();
    assert!(!binary.windows(checkout.len()).any(|w| w == checkout.as_bytes()), "the binary names {checkout}");
}

/// Code without its stack (`-o`) is deployed only over a stack of the same version: else the
/// functions of one version would run under the template and roles of another, and the stack
/// would say the other version.
#[tokio::test]
async fn code_alone_goes_only_under_a_stack_of_its_version() {
    let (acct, release) = deployed_then_marked("0.0.1").await;
    let newer_code = other_code();
    let before = acct.recorded().len();
    let (code, out, err) = deploy(&acct, newer_code.path(), &["-o"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("it runs version 0.0.1: -o would update only the code"), "{err}");
    assert_eq!(changes_since(&acct, before), Vec::<String>::new(), "nothing uploaded or changed");
    // With the stack, it is an upgrade.
    let (code, out, err) = deploy(&acct, newer_code.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(tag(&stack(&acct).await, "ebs-snapper:version").as_deref(), Some(VERSION));
    // Then code alone of the same version goes through.
    let (code, out, err) = deploy(&acct, release.path(), &["-o"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("code updated"), "{out}");
}

/// An account with a stack deployed from a release of this version, then made to look as a
/// deploy of `version` left it; and that release.
async fn deployed_then_marked(version: &str) -> (Account, tempfile::TempDir) {
    let acct = Account::new().await;
    let release = release_tree("x86_64");
    let (code, out, err) = deploy(&acct, release.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    mark(&acct, version).await;
    (acct, release)
}

/// A release of this version whose create-snapshot zip differs from `release_tree`'s.
fn other_code() -> tempfile::TempDir {
    let release = release_tree("x86_64");
    std::fs::write(release.path().join("lambda/create-snapshot/bootstrap.zip"), "other code").unwrap();
    seal(release.path(), VERSION, Some("x86_64"), &[]);
    release
}

/// Makes the stack look as a deploy of `version` left it: its `ToolVersion` and its tag.
async fn mark(acct: &Account, version: &str) {
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk("us-east-1").await);
    let name = format!("ebs-snapper-{}", acct.id);
    // Every value given (the emulator fails "use previous value" for a defaulted parameter).
    let params: Vec<_> = stack(acct)
        .await
        .parameters()
        .iter()
        .map(|p| {
            let key = p.parameter_key().unwrap();
            let value = if key == "ToolVersion" { version } else { p.parameter_value().unwrap_or("") };
            aws_sdk_cloudformation::types::Parameter::builder().parameter_key(key).parameter_value(value).build()
        })
        .collect();
    cfn.update_stack()
        .stack_name(&name)
        .use_previous_template(true)
        .set_parameters(Some(params))
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        .tags(aws_sdk_cloudformation::types::Tag::builder().key("ebs-snapper:version").value(version).build())
        .send()
        .await
        .unwrap();
    assert_eq!(tag(&stack(acct).await, "ebs-snapper:version").as_deref(), Some(version));
}
