//! Events a worker function accepts (SPEC §7, §13): `{"region": R}`, the same as the JSON text
//! of an SNS message (`Records[0].Sns.Message`), the continuation form
//! `{"region": R, "continuation": n}`, and either with `"account": "123456789012"` for a member
//! account (without it, the deployment's own account).

use serde_json::Value;
use thiserror::Error;

use crate::config::kind;
use crate::ids::{is_account_id, is_region_name};

/// At most this many continuation hops follow one scheduled run.
pub const MAX_CONTINUATIONS: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEvent {
    /// The member account to work in; `None` is the deployment's own account.
    pub account: Option<String>,
    pub region: String,
    /// 0 for a first invocation, n for the n-th continuation.
    pub continuation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid event: {0}")]
pub struct EventError(pub String);

fn err(msg: impl Into<String>) -> EventError {
    EventError(msg.into())
}

/// Whether `event` is an EventBridge (CloudWatch Events) event, such as a schedule rule's:
/// `{"version", "id", "detail-type": "Scheduled Event", "source": "aws.events", "account",
/// "time", "region", "resources", "detail"}`. Its `region` is where the rule lives, never a
/// work order: such an event means "every region".
pub fn is_scheduled_event(event: &Value) -> bool {
    event.get("source").and_then(Value::as_str) == Some("aws.events")
}

impl WorkerEvent {
    pub fn parse(event: &Value) -> Result<WorkerEvent, EventError> {
        let obj = event.as_object().ok_or_else(|| err(format!("expected a JSON object, found {}", kind(event))))?;
        if let Some(records) = obj.get("Records") {
            let records = records.as_array().ok_or_else(|| err("Records must be a list"))?;
            let [record] = records.as_slice() else {
                return Err(err(format!("expected exactly one SNS record, found {}", records.len())));
            };
            let message =
                record.get("Sns").and_then(|s| s.get("Message")).ok_or_else(|| err("the record has no Sns.Message"))?;
            let text = message.as_str().ok_or_else(|| err("Sns.Message must be a string of JSON"))?;
            let inner: Value = serde_json::from_str(text).map_err(|e| err(format!("Sns.Message is not JSON: {e}")))?;
            if inner.get("Records").is_some() {
                return Err(err("nested SNS envelopes are not accepted"));
            }
            return WorkerEvent::parse(&inner);
        }
        let region = obj.get("region").ok_or_else(|| err("missing \"region\""))?;
        let region =
            region.as_str().ok_or_else(|| err(format!("\"region\" must be a string, found {}", kind(region))))?;
        if !is_region_name(region) {
            return Err(err(format!("\"region\": {} is not an AWS region name", crate::error::Shown(region))));
        }
        let account = match obj.get("account") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) if is_account_id(a) => Some(a.clone()),
            Some(Value::String(a)) => {
                return Err(err(format!(
                    "\"account\": {} is not an AWS account id (12 digits)",
                    crate::error::Shown(a)
                )))
            }
            Some(v) => return Err(err(format!("\"account\" must be a string, found {}", kind(v)))),
        };
        let continuation = match obj.get("continuation") {
            None | Some(Value::Null) => 0,
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| err(format!("\"continuation\" must be a whole number, found {v}")))?;
                if n > u64::from(MAX_CONTINUATIONS) {
                    return Err(err(format!("\"continuation\": {n} is beyond the limit of {MAX_CONTINUATIONS} hops")));
                }
                n as u32
            }
        };
        for key in obj.keys() {
            if !["region", "continuation", "account"].contains(&key.as_str()) {
                return Err(err(format!("unknown key {}", crate::error::Shown(key))));
            }
        }
        Ok(WorkerEvent { account, region: region.to_string(), continuation })
    }

    /// A first work order for `region` (of `account`, a member, when given).
    pub fn new(account: Option<&str>, region: &str) -> WorkerEvent {
        WorkerEvent { account: account.map(str::to_string), region: region.to_string(), continuation: 0 }
    }

    pub fn to_json(&self) -> Value {
        let mut doc = serde_json::json!({ "region": self.region });
        if let Some(account) = &self.account {
            doc["account"] = Value::String(account.clone());
        }
        if self.continuation > 0 {
            doc["continuation"] = self.continuation.into();
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            WorkerEvent::parse(&json!({"region": "us-west-2"})).unwrap(),
            WorkerEvent { account: None, region: "us-west-2".into(), continuation: 0 }
        );
        assert_eq!(
            WorkerEvent::parse(&json!({"region": "eu-west-1", "continuation": 3})).unwrap(),
            WorkerEvent { account: None, region: "eu-west-1".into(), continuation: 3 }
        );
        assert_eq!(
            WorkerEvent::parse(&json!({"account": "111122223333", "region": "eu-west-1"})).unwrap(),
            WorkerEvent { account: Some("111122223333".into()), region: "eu-west-1".into(), continuation: 0 }
        );
        let sns =
            json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{\"region\": \"ap-southeast-2\"}"}}]});
        assert_eq!(WorkerEvent::parse(&sns).unwrap().region, "ap-southeast-2");
        assert_eq!(WorkerEvent::parse(&json!({"region": "us-gov-west-1"})).unwrap().region, "us-gov-west-1");
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let cases = [
            (json!({}), "missing \"region\""),
            (json!([]), "expected a JSON object"),
            (json!("us-east-1"), "expected a JSON object"),
            (json!({"region": 5}), "\"region\" must be a string"),
            (json!({"region": "mars-1"}), "is not an AWS region name"),
            (json!({"region": "US-EAST-1"}), "is not an AWS region name"),
            (json!({"region": format!("us-{}-1", "a".repeat(40))}), "is not an AWS region name"),
            (json!({"region": "us-east-1", "continuation": -1}), "\"continuation\" must be a whole number"),
            (json!({"region": "us-east-1", "continuation": "2"}), "\"continuation\" must be a whole number"),
            (json!({"region": "us-east-1", "continuation": 11}), "beyond the limit"),
            (json!({"region": "us-east-1", "regoin": "x"}), "unknown key"),
            (json!({"region": "us-east-1", "account": "12345"}), "\"account\": \"12345\" is not an AWS account id"),
            (json!({"region": "us-east-1", "account": "11112222333a"}), "is not an AWS account id"),
            (json!({"region": "us-east-1", "account": 111122223333u64}), "\"account\" must be a string"),
            (json!({"Records": []}), "exactly one SNS record"),
            (json!({"Records": [{"Sns": {"Message": "not json"}}]}), "Sns.Message is not JSON"),
            (json!({"Records": [{"Sns": {"Message": {"region": "us-east-1"}}}]}), "Sns.Message must be a string"),
            (json!({"Records": [{"Sns": {}}]}), "no Sns.Message"),
            (json!({"Records": "x"}), "Records must be a list"),
        ];
        for (event, expected) in cases {
            let e = WorkerEvent::parse(&event).unwrap_err().to_string();
            assert!(e.contains(expected), "{event}: {e}");
            assert!(e.starts_with("invalid event: "));
        }
    }

    #[test]
    fn a_real_scheduled_event_is_told_from_a_work_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/events/scheduled");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let event: Value = serde_json::from_str(&text).unwrap();
            assert!(event.get("region").is_some(), "real scheduled events carry a region");
            assert!(is_scheduled_event(&event), "{event}");
            seen += 1;
        }
        assert!(seen >= 2);
        assert!(!is_scheduled_event(&json!({"region": "us-east-1"})));
        assert!(!is_scheduled_event(&json!({"Records": []})));
    }

    #[test]
    fn round_trip() {
        for e in [
            WorkerEvent { account: None, region: "us-east-1".into(), continuation: 0 },
            WorkerEvent { account: None, region: "us-east-1".into(), continuation: 4 },
            WorkerEvent { account: Some("111122223333".into()), region: "us-east-1".into(), continuation: 0 },
            WorkerEvent { account: Some("111122223333".into()), region: "us-east-1".into(), continuation: 2 },
        ] {
            assert_eq!(WorkerEvent::parse(&e.to_json()).unwrap(), e);
        }
    }
}
