//! CloudWatch Embedded Metric Format: one JSON log line per region run, which CloudWatch turns
//! into metrics (namespace `EbsSnapper`; dimensions function and region, and function, account
//! and region) with no API call.

use serde_json::{json, Value};

use crate::job::Job;
use crate::report::RegionReport;

pub const NAMESPACE: &str = "EbsSnapper";

/// The EMF document for one region run of `function` in `account` (the deployment's or a
/// member's), stamped `timestamp_ms`.
pub fn emf(function: &str, account: &str, report: &RegionReport, timestamp_ms: i64) -> Value {
    let metrics: [(&str, usize); 6] = [
        ("SnapshotsCreated", report.created),
        ("SnapshotsDeleted", if report.job == Job::Replication { 0 } else { report.deleted }),
        ("SnapshotsCopied", report.copied),
        ("SnapshotsArchived", report.archived),
        ("ReplicasDeleted", if report.job == Job::Replication { report.deleted } else { 0 }),
        ("Failures", report.failed),
    ];
    let mut metrics = metrics.to_vec();
    if report.job == Job::Clean {
        metrics.extend([("Drills", report.drilled), ("DrillsFailed", report.drills_failed)]);
    }
    if report.job == Job::Snapshot {
        metrics.extend([
            ("VolumesOk", report.volumes.ok),
            ("VolumesNever", report.volumes.never),
            ("VolumesOverdue", report.volumes.overdue),
        ]);
    }
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function", "region"], ["function", "account", "region"]],
                "Metrics": metrics.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        },
        "function": function,
        "account": account,
        "region": report.region,
    });
    for (name, value) in &metrics {
        doc[*name] = json!(value);
    }
    // The drills also per function alone, which the template's DrillsFailed alarm watches (an
    // alarm reads one metric: it cannot add up the regions).
    if report.job == Job::Clean {
        doc["_aws"]["CloudWatchMetrics"].as_array_mut().expect("a list").push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["function"]],
            "Metrics": [{"Name": "Drills", "Unit": "Count"}, {"Name": "DrillsFailed", "Unit": "Count"}],
        }));
    }
    doc
}

/// A fanout run's line (dimension `function`): `Failures`, the (account, region) pairs it could
/// not hand to a worker (an account not reached, a region not probed or not invoked). A fanout
/// that invoked workers succeeds whatever it could not reach (SPEC §10.13), so this metric,
/// which the template alarms on, is how those failures reach someone.
pub fn fanout(function: &str, failures: usize, timestamp_ms: i64) -> Value {
    of_function(function, "Failures", failures, timestamp_ms)
}

/// One metric of `function` alone (dimension `function`).
fn of_function(function: &str, name: &str, value: usize, timestamp_ms: i64) -> Value {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function"]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        "function": function,
    });
    doc[name] = json!(value);
    doc
}

/// The heartbeat of a snapshot worker run that succeeded (`SnapshotRunHeartbeat` = 1, dimension
/// `function`): the template's alarm fires when none came for 24 hours, whatever the reason the
/// schedule went silent (rule disabled, role broken, every run failing). The workers beat it,
/// not the fanout: one unreachable member account does not silence it while every other
/// account is backed up.
pub fn heartbeat(function: &str, timestamp_ms: i64) -> Value {
    of_function(function, HEARTBEAT, 1, timestamp_ms)
}

/// The heartbeat metric's name.
pub const HEARTBEAT: &str = "SnapshotRunHeartbeat";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document() {
        let mut r = RegionReport::new(Job::Replication, "us-east-1", false);
        r.copied = 2;
        r.deleted = 1;
        r.failed = 1;
        let d = emf("replication", "111122223333", &r, 1_700_000_000_000);
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "EbsSnapper");
        // Per region over every account (the dashboard's), and per account and region: a member's
        // failures are its own series too.
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function", "region"], ["function", "account", "region"]])
        );
        assert_eq!(d["account"], "111122223333");
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 6);
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!((d["function"].as_str(), d["region"].as_str()), (Some("replication"), Some("us-east-1")));
        assert_eq!(
            (d["SnapshotsCopied"].as_u64(), d["ReplicasDeleted"].as_u64(), d["SnapshotsDeleted"].as_u64()),
            (Some(2), Some(1), Some(0))
        );
        assert_eq!(d["Failures"], 1);
        let mut s = RegionReport::new(Job::Snapshot, "eu-west-1", false);
        s.volumes.overdue = 2;
        let d = emf("create-snapshot", "111122223333", &s, 0);
        assert_eq!((d["VolumesOverdue"].as_u64(), d["VolumesOk"].as_u64()), (Some(2), Some(0)));
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 9);
        let h = heartbeat("ebs-snapper-create-snapshot", 5);
        assert_eq!((h[HEARTBEAT].as_u64(), h["function"].as_str()), (Some(1), Some("ebs-snapper-create-snapshot")));
        let f = fanout("ebs-snapper-fanout-snapshot", 2, 5);
        assert_eq!((f["Failures"].as_u64(), f["function"].as_str()), (Some(2), Some("ebs-snapper-fanout-snapshot")));
        assert_eq!(f["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
        assert_eq!(f["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "Failures");
        assert_eq!(h["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], HEARTBEAT);
        let mut c = RegionReport::new(Job::Clean, "eu-west-1", false);
        c.deleted = 3;
        c.archived = 2;
        assert_eq!(emf("clean-snapshot", "111122223333", &c, 0)["SnapshotsDeleted"], 3);
        assert_eq!(emf("clean-snapshot", "111122223333", &c, 0)["SnapshotsArchived"], 2);
        // The clean job's drills (SPEC §17): the alarm watches DrillsFailed.
        c.drilled = 4;
        c.drills_failed = 1;
        let d = emf("clean-snapshot", "111122223333", &c, 0);
        assert_eq!((d["Drills"].as_u64(), d["DrillsFailed"].as_u64()), (Some(4), Some(1)));
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 8);
        assert_eq!(d["_aws"]["CloudWatchMetrics"][1]["Dimensions"], json!([["function"]]));
        assert_eq!(d["_aws"]["CloudWatchMetrics"][1]["Metrics"][1]["Name"], "DrillsFailed");
    }
}
