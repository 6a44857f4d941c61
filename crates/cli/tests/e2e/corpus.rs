//! The bad-input corpus (tests/corpus): every malformed configuration and event gives one clear
//! error naming the problem; nothing is stored, invoked or deleted; nothing panics.

use crate::support;

use std::path::PathBuf;

use ebs_snapper_core::{Configuration, Strictness};
use ebs_snapper_lambda::handlers::{create_snapshot, Environment, FunctionError, Invocation};
use support::{text, Account};

/// Longest acceptable error line.
const MAX_LINE: usize = 400;

fn corpus(kind: &str) -> Vec<(String, String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus").join(kind);
    let manifest = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, expected) = l.split_once('\t').unwrap();
            (file.to_string(), std::fs::read_to_string(dir.join(file)).unwrap(), expected.to_string())
        })
        .collect()
}

#[test]
fn corpus_sizes() {
    assert!(corpus("configs").len() >= 50);
    assert!(corpus("events").len() >= 20);
}

#[test]
fn every_bad_configuration_is_rejected_by_the_parser() {
    for (file, text, expected) in corpus("configs") {
        // Each expectation names the field and the problem, not only a field prefix.
        let (field, problem) = expected.split_once(": ").unwrap_or(("", ""));
        assert!(
            !field.trim().is_empty() && problem.trim().len() >= 5,
            "{file}: the expectation {expected:?} must name the field and the problem"
        );
        let err = Configuration::parse(&text, Strictness::Strict).map(|_| ()).expect_err(&file).to_string();
        assert!(err.contains(&expected), "{file}: {err:?} should contain {expected:?}");
        assert!(!err.contains('\n') && err.len() <= MAX_LINE, "{file}: one readable line, got {} chars", err.len());
        // At run time the same text is either invalid, or valid with a warning for an unknown key,
        // or (a filter EC2 refuses) valid here and refused by EC2, which the run reports.
        match Configuration::parse(&text, Strictness::Lenient) {
            Ok(parsed) if expected.contains("unknown key") => assert!(!parsed.warnings.is_empty(), "{file}"),
            Ok(_) => {
                assert!(expected.contains("DescribeInstances filter") || expected.contains("at most 200"), "{file}")
            }
            Err(e) => assert_eq!(e.to_string(), err, "{file}"),
        }
    }
}

#[tokio::test]
async fn every_bad_configuration_is_refused_by_configure_and_nothing_is_stored() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    for (file, config, expected) in corpus("configs") {
        let out = acct.cli().args(["configure", "-s", "bad", "-"]).write_stdin(config).output().unwrap();
        let err = support::text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.len() <= MAX_LINE + 60, "{file}: {} chars", err.len());
        assert!(err.contains(&expected), "{file}: {err:?} should contain {expected:?}");
        assert!(!err.contains("panicked"));
        assert!(text(&out.stdout).is_empty());
    }
    assert!(acct.items("us-east-1").await.is_empty(), "nothing was stored");
    assert_eq!(acct.count("PutItem", None), 0);
}

#[tokio::test]
async fn every_bad_event_is_a_function_error_and_does_no_work() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    acct.launch("us-east-1", &[("backup", "yes")]).await;
    let (aws, _role) = acct.aws_as("us-east-1", "create-snapshot", &[]).await;
    let before = acct.recorded().len();
    for (file, event, expected) in corpus("events") {
        let payload: serde_json::Value = serde_json::from_str(&event).unwrap();
        let inv = Invocation { payload, function_arn: acct.function_arn("create"), deadline: None };
        let err = create_snapshot(&aws, &Environment::default(), inv).await.expect_err(&file);
        assert!(matches!(err, FunctionError::Event(_)), "{file}: {err}");
        let message = err.to_string();
        assert!(
            message.starts_with("invalid event: ") && message.contains(&expected),
            "{file}: {message:?} should contain {expected:?}"
        );
        assert!(!message.contains('\n') && message.len() <= MAX_LINE, "{file}: {} chars", message.len());
    }
    assert_eq!(acct.recorded().len(), before, "no AWS call: nothing listed, created or invoked");
    assert!(acct.snapshots("us-east-1").await.is_empty());
}

/// The stricter emulator refuses the filter names that `configure -s` refuses: its list
/// (`scripts/testbed/strict_moto.py`) is core's (`instance_filters::INSTANCE_FILTERS`), name for
/// name, and both allow 200 values a filter.
#[test]
fn the_emulator_knows_the_instance_filters_core_knows() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/testbed/strict_moto.py");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("INSTANCE_FILTERS = {").expect("the emulator's list") + "INSTANCE_FILTERS = {".len();
    let end = start + text[start..].find('}').unwrap();
    let emulator: std::collections::BTreeSet<&str> =
        text[start..end].split(',').map(|s| s.trim().trim_matches('\'')).filter(|s| !s.is_empty()).collect();
    let core: std::collections::BTreeSet<&str> =
        ebs_snapper_core::instance_filters::INSTANCE_FILTERS.iter().copied().collect();
    assert!(core.len() > 100, "core's list: {}", core.len());
    assert_eq!(emulator, core, "the emulator and core differ");
    let limit = format!("MAX_FILTER_VALUES = {}", ebs_snapper_core::instance_filters::MAX_FILTER_VALUES);
    assert!(text.contains(&limit), "{limit}");
}
