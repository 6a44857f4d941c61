//! CloudWatch Embedded Metric Format: one JSON log line per region run, which CloudWatch turns
//! into metrics (namespace `EbsSnapper`, dimensions function and region) with no API call.

use serde_json::{json, Value};

use crate::job::Job;
use crate::report::RegionReport;

pub const NAMESPACE: &str = "EbsSnapper";

/// The EMF document for one region run of `function`, stamped `timestamp_ms`.
pub fn emf(function: &str, report: &RegionReport, timestamp_ms: i64) -> Value {
    let metrics: [(&str, usize); 6] = [
        ("SnapshotsCreated", report.created),
        ("SnapshotsDeleted", if report.job == Job::Replication { 0 } else { report.deleted }),
        ("SnapshotsCopied", report.copied),
        ("SnapshotsArchived", report.archived),
        ("ReplicasDeleted", if report.job == Job::Replication { report.deleted } else { 0 }),
        ("Failures", report.failed),
    ];
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function", "region"]],
                "Metrics": metrics.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        },
        "function": function,
        "region": report.region,
    });
    for (name, value) in metrics {
        doc[name] = json!(value);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document() {
        let mut r = RegionReport::new(Job::Replication, "us-east-1", false);
        r.copied = 2;
        r.deleted = 1;
        r.failed = 1;
        let d = emf("replication", &r, 1_700_000_000_000);
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "EbsSnapper");
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function", "region"]]));
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 6);
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!((d["function"].as_str(), d["region"].as_str()), (Some("replication"), Some("us-east-1")));
        assert_eq!(
            (d["SnapshotsCopied"].as_u64(), d["ReplicasDeleted"].as_u64(), d["SnapshotsDeleted"].as_u64()),
            (Some(2), Some(1), Some(0))
        );
        assert_eq!(d["Failures"], 1);
        let mut c = RegionReport::new(Job::Clean, "eu-west-1", false);
        c.deleted = 3;
        c.archived = 2;
        assert_eq!(emf("clean-snapshot", &c, 0)["SnapshotsDeleted"], 3);
        assert_eq!(emf("clean-snapshot", &c, 0)["SnapshotsArchived"], 2);
    }
}
