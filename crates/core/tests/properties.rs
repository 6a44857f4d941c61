//! Property tests: parsers never panic, whatever the input.

use ebs_snapper_core::{parse_duration, Configuration, Schedule, Strictness};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn duration_parse_never_panics(s in "\\PC{0,40}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn duration_like_text_never_panics(n in "[0-9.]{0,25}", unit in "(?i)(s|m|h|d|w|min|hours?|days?|weeks?|months?|x)", rest in "[ ,0-9a-z.]{0,12}") {
        let _ = parse_duration(&format!("{n} {unit}{rest}"));
    }

    #[test]
    fn schedule_parse_never_panics(s in "\\PC{0,40}") {
        let _ = Schedule::parse(&s);
    }

    #[test]
    fn cron_like_text_never_panics(fields in proptest::collection::vec("[0-9*?/,#LW A-Z-]{1,6}", 1..8), wrap in any::<bool>()) {
        let body = fields.join(" ");
        let text = if wrap { format!("cron({body})") } else { body };
        if let Ok(s) = Schedule::parse(&text) {
            // A parsed schedule can always be evaluated without panicking.
            let _ = s.next_due(chrono::Utc::now());
        }
    }

    #[test]
    fn configuration_parse_never_panics(s in "\\PC{0,200}") {
        let _ = Configuration::parse(&s, Strictness::Strict);
        let _ = Configuration::parse(&s, Strictness::Lenient);
    }

    #[test]
    fn configuration_with_arbitrary_fields_never_panics(
        key in "\\PC{0,10}", value in "\\PC{0,20}", retention in "\\PC{0,15}", minimum in any::<i64>(), frequency in "\\PC{0,20}"
    ) {
        let v = serde_json::json!({
            "match": { key: value },
            "snapshot": { "retention": retention, "minimum": minimum, "frequency": frequency },
        });
        let _ = Configuration::parse(&v.to_string(), Strictness::Strict);
    }
}

/// A duration as an operator writes it.
fn duration_text(min_hours: bool) -> impl Strategy<Value = String> {
    let units: &[&str] = if min_hours {
        &["hours", "hour", "h", "days", "d", "weeks", "w", "DAYS"]
    } else {
        &["minutes", "min", "hours", "h", "days", "day", "d", "weeks", "w", "Days"]
    };
    (1u32..400, proptest::sample::select(units.to_vec()), any::<bool>()).prop_map(|(n, unit, half)| {
        if half {
            format!("{n}.5 {unit}")
        } else {
            format!("{n} {unit}")
        }
    })
}

fn frequency_text() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_text(true),
        proptest::sample::select(vec![
            "0 */6 * * *",
            "30 2 * * 1-5",
            "0 0 1 * *",
            "cron(0 3 * * ? *)",
            "cron(15 */4 ? * MON-FRI *)",
            "0 12 * * SUN",
        ])
        .prop_map(str::to_string),
    ]
}

fn flag() -> impl Strategy<Value = serde_json::Value> {
    proptest::sample::select(vec![
        serde_json::json!(true),
        serde_json::json!(false),
        serde_json::json!("yes"),
        serde_json::json!("no"),
    ])
}

prop_compose! {
    /// The JSON text of a configuration built from valid parts.
    fn configuration_text()(
        filters in proptest::collection::vec(
            ("tag:[A-Za-z][A-Za-z0-9_-]{0,8}", proptest::collection::vec("[a-z0-9-]{1,10}", 1..3)),
            1..4,
        ),
        retention in duration_text(false),
        minimum in 0u32..100_000,
        frequency in frequency_text(),
        ignore in proptest::collection::vec("(i|vol|snap)-0[0-9a-f]{8,16}", 0..4),
        ignore_retention in flag(),
        replication in flag(),
    ) -> String {
        let matches: serde_json::Map<String, serde_json::Value> =
            filters.into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect();
        serde_json::json!({
            "match": matches,
            "snapshot": { "retention": retention, "minimum": minimum, "frequency": frequency },
            "ignore": ignore,
            "ignore_retention": ignore_retention,
            "replication": replication,
        })
        .to_string()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A valid configuration written back as JSON reads back to the same configuration, and its
    /// canonical JSON is stable.
    #[test]
    fn valid_configuration_round_trips_through_json(text in configuration_text()) {
        let first = Configuration::parse(&text, Strictness::Strict)
            .unwrap_or_else(|e| panic!("built from valid parts, yet {text} is rejected: {e}"))
            .configuration;
        let json = first.to_json();
        let second = Configuration::parse(&json.to_string(), Strictness::Strict)
            .unwrap_or_else(|e| panic!("{json} does not parse back: {e}"))
            .configuration;
        prop_assert_eq!(&second, &first, "{}", json);
        prop_assert_eq!(second.to_json(), json);
    }
}

// ---- Planner properties: random inventories and snapshot histories ----

mod planners {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use ebs_snapper_core::tags::{DELETE_ON, TAG_CONFIG, TAG_INSTANCE};
    use ebs_snapper_core::{
        plan_retention, plan_snapshots, Attachment, ConfigurationSet, Instance, Inventory, RetentionAction, Snapshot,
        SnapshotState, StoredConfiguration, Tags, Volume, VolumeAction,
    };
    use proptest::prelude::*;

    /// One random scene: configurations, instances (each matched by some configurations) with
    /// volumes, orphan volumes, and every volume's snapshot history.
    #[derive(Debug, Clone)]
    struct Scene {
        configs: ConfigurationSet,
        inventory: Inventory,
        ignored_volumes: BTreeSet<String>,
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 15).unwrap()
    }

    /// (age in days, DeleteOn: none / unparseable / days from today, state, config tag)
    type SnapSpec = (i64, Option<Option<i64>>, u8, Option<u8>);

    fn scene() -> impl Strategy<Value = Scene> {
        let config = (0u32..5, any::<bool>(), "(1|6|24) hours");
        let instance = (proptest::collection::vec(any::<bool>(), 3), 1usize..3);
        let snap =
            (0i64..60, proptest::option::of(proptest::option::of(-30i64..30)), 0u8..10, proptest::option::of(0u8..4));
        (
            proptest::collection::vec(config, 1..4),
            proptest::collection::vec(instance, 0..5),
            1usize..3,
            proptest::collection::vec(proptest::collection::vec(snap, 0..8), 16),
            proptest::collection::vec(any::<bool>(), 16),
        )
            .prop_map(|(configs, instances, orphans, histories, ignore)| {
                build(configs, instances, orphans, histories, ignore)
            })
    }

    fn build(
        configs: Vec<(u32, bool, String)>,
        instances: Vec<(Vec<bool>, usize)>,
        orphans: usize,
        histories: Vec<Vec<SnapSpec>>,
        ignore: Vec<bool>,
    ) -> Scene {
        let mut inventory = Inventory { region: "us-east-1".into(), ..Default::default() };
        let mut volumes = Vec::new();
        for (i, (matched_by, n)) in instances.iter().enumerate() {
            let id = format!("i-{i}");
            let vols: Vec<String> = (0..*n).map(|v| format!("vol-{i}-{v}")).collect();
            for (c, m) in matched_by.iter().enumerate().take(configs.len()) {
                if *m {
                    inventory.matched.entry(format!("c{c}")).or_default().push(id.clone());
                }
            }
            for v in &vols {
                inventory.volumes.insert(
                    v.clone(),
                    Volume { id: v.clone(), tags: Tags::new(), created: None, encryption: Default::default() },
                );
            }
            volumes.extend(vols.iter().map(|v| (v.clone(), Some(id.clone()))));
            inventory.instances.insert(
                id.clone(),
                Instance {
                    id,
                    state: "running".into(),
                    image_id: None,
                    root_device: None,
                    tags: Tags::new(),
                    volumes: vols
                        .iter()
                        .map(|v| Attachment { device: "/dev/sdf".into(), volume_id: v.clone() })
                        .collect(),
                },
            );
        }
        volumes.extend((0..orphans).map(|o| (format!("vol-orphan-{o}"), None)));
        let noon = Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap();
        let mut ignored_ids = Vec::new();
        let mut ignored_volumes = BTreeSet::new();
        for (k, ((volume, instance), history)) in volumes.iter().zip(histories).enumerate() {
            if ignore[k] && k % 3 == 0 {
                ignored_ids.push(volume.clone());
            }
            if ignore[k] && k % 3 == 1 {
                ignored_volumes.insert(volume.clone());
            }
            for (n, (age, delete_on, state, config)) in history.into_iter().enumerate() {
                let id = format!("snap-{k}-{n}");
                if ignore[(k + n) % 16] && n % 4 == 3 {
                    ignored_ids.push(id.clone());
                }
                let mut tags = Tags::new();
                match delete_on {
                    None => {}
                    Some(None) => {
                        tags.insert(DELETE_ON.into(), "soon".into());
                    }
                    Some(Some(days)) => {
                        tags.insert(DELETE_ON.into(), (today() + Duration::days(days)).format("%Y-%m-%d").to_string());
                    }
                }
                if let Some(c) = config {
                    tags.insert(TAG_CONFIG.into(), format!("c{c}"));
                }
                if let Some(i) = instance {
                    tags.insert(TAG_INSTANCE.into(), i.clone());
                }
                inventory.snapshots.push(Snapshot {
                    id,
                    is_copy: false,
                    volume_id: Some(volume.clone()),
                    start_time: noon - Duration::days(age) - Duration::minutes(n as i64),
                    state: match state {
                        0 => SnapshotState::Pending,
                        1 => SnapshotState::Error,
                        _ => SnapshotState::Completed,
                    },
                    tags,
                    description: String::new(),
                    archived: false,
                    state_message: None,
                });
            }
        }
        let ignore_list = serde_json::to_string(&ignored_ids).unwrap();
        let stored: Vec<StoredConfiguration> = configs
            .iter()
            .enumerate()
            .map(|(c, (minimum, ignore_retention, frequency))| StoredConfiguration {
                id: format!("c{c}"),
                text: format!(
                    r#"{{"match": {{"tag:backup": "c{c}"}}, "snapshot": {{"retention": "5 days", "minimum": {minimum}, "frequency": "{frequency}"}}, "ignore_retention": {ignore_retention}, "ignore": {ignore_list}}}"#
                ),
            })
            .collect();
        Scene { configs: ConfigurationSet::from_stored(&stored), inventory, ignored_volumes }
    }

    /// The volume's minimum as SPEC §5 defines it, computed here apart from the planner: the
    /// first configuration (by id) matching its instance, else the largest minimum among the live
    /// configurations its snapshots name; `None` when undetermined.
    fn minimum_of(scene: &Scene, volume: &str, snaps: &[&Snapshot]) -> Option<u32> {
        for named in &scene.configs.valid {
            let matched = scene.inventory.matched.get(&named.id).into_iter().flatten();
            if matched
                .filter_map(|i| scene.inventory.instances.get(i))
                .any(|i| i.volumes.iter().any(|a| a.volume_id == volume))
            {
                return Some(named.configuration.largest_minimum());
            }
        }
        snaps
            .iter()
            .filter_map(|s| s.tags.get(TAG_CONFIG))
            .filter_map(|c| scene.configs.get(c))
            .map(|c| c.configuration.largest_minimum())
            .max()
    }

    fn is_ignored(scene: &Scene, s: &Snapshot) -> bool {
        let ids = scene.configs.ignored_ids();
        ids.contains(&s.id)
            || s.volume_id.as_ref().is_some_and(|v| ids.contains(v) || scene.ignored_volumes.contains(v))
            || s.tags.get(TAG_INSTANCE).is_some_and(|i| ids.contains(i))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn retention_keeps_each_minimum_deletes_oldest_first_and_touches_nothing_it_must_not(scene in scene()) {
            let plan = plan_retention(&scene.configs, &scene.inventory, &scene.ignored_volumes, today());
            // The plan is a function of its input: planned twice (dry run, then run), the same.
            prop_assert_eq!(&plan.decisions, &plan_retention(&scene.configs, &scene.inventory, &scene.ignored_volumes, today()).decisions);
            let deleted: BTreeSet<&str> = plan.deletes().map(|d| d.snapshot_id).collect();
            let by_id: BTreeMap<&str, &Snapshot> = scene.inventory.snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
            for id in &deleted {
                let s = by_id[id];
                prop_assert!(!is_ignored(&scene, s), "{} is ignored", id);
                if s.state == SnapshotState::Error {
                    // SPEC §10.11: an errored snapshot holds no data; it goes once a newer
                    // snapshot of its volume completed.
                    let newer_completed = scene.inventory.snapshots.iter().any(|o| {
                        o.volume_id == s.volume_id && o.state == SnapshotState::Completed && o.start_time > s.start_time && o.tags.contains_key(DELETE_ON)
                    });
                    prop_assert!(newer_completed, "{} is in error but no newer snapshot completed", id);
                    continue;
                }
                let delete_on = s.tags.get(DELETE_ON).and_then(ebs_snapper_core::parse_delete_on);
                prop_assert!(delete_on.is_some_and(|d| d <= today()), "{} deleted before its DeleteOn or without one", id);
                prop_assert_eq!(s.state, SnapshotState::Completed, "{} is not completed", id);
            }
            let mut by_volume: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
            for s in &scene.inventory.snapshots {
                if s.tags.contains_key(DELETE_ON) {
                    by_volume.entry(s.volume_id.as_deref().unwrap()).or_default().push(s);
                }
            }
            for (volume, snaps) in &by_volume {
                let completed = snaps.iter().filter(|s| s.state == SnapshotState::Completed).count();
                let gone = snaps.iter().filter(|s| s.state == SnapshotState::Completed && deleted.contains(s.id.as_str())).count();
                match minimum_of(&scene, volume, snaps) {
                    Some(minimum) => prop_assert!(
                        completed - gone >= (minimum as usize).min(completed),
                        "{} dropped to {} of minimum {}", volume, completed - gone, minimum
                    ),
                    None if !scene.configs.ignore_retention() => prop_assert_eq!(gone, 0, "{} has no known minimum", volume),
                    None => {}
                }
                // Oldest first: no expired snapshot kept by the minimum is older than one deleted.
                let newest_deleted = snaps.iter().filter(|s| s.state == SnapshotState::Completed && deleted.contains(s.id.as_str())).map(|s| s.start_time).max();
                let kept_by_minimum = plan.decisions.iter().filter(|d| d.volume_id == Some(volume) && matches!(d.action, RetentionAction::Keep(ebs_snapper_core::Keep::Minimum { .. })));
                for d in kept_by_minimum {
                    prop_assert!(newest_deleted.is_none_or(|n| by_id[d.snapshot_id].start_time >= n), "{} kept, an newer one deleted", d.snapshot_id);
                }
            }
        }

        #[test]
        fn snapshots_are_planned_only_for_matched_volumes_that_are_not_ignored(scene in scene()) {
            let now = Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap();
            let plan = plan_snapshots(&scene.configs, &scene.inventory, now, "0.0.0");
            let ids = scene.configs.ignored_ids();
            let matched: BTreeSet<&str> = scene.inventory.matched.values().flatten().map(String::as_str).collect();
            for d in &plan.decisions {
                prop_assert!(matched.contains(d.instance_id.as_str()), "{} was never matched", d.instance_id);
                if let VolumeAction::Create { request, .. } = &d.action {
                    prop_assert!(!ids.contains(&d.volume_id) && !ids.contains(&d.instance_id), "{} is ignored", d.volume_id);
                    prop_assert_eq!(&request.volume_id, &d.volume_id);
                }
            }
            prop_assert_eq!(plan.decisions.len(), plan_snapshots(&scene.configs, &scene.inventory, now, "0.0.0").decisions.len());
        }
    }
}

/// Tiers (SPEC §11): for random snapshot histories of one volume under a tiered configuration,
/// no tier drops below its minimum, deletions are oldest-first within each tier, and archiving
/// keeps to its rules.
mod tiers {
    use std::collections::BTreeSet;

    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use ebs_snapper_core::retention_plan::ARCHIVE_MIN_DAYS;
    use ebs_snapper_core::tags::{DELETE_ON, TAG_TIER};
    use ebs_snapper_core::tiers::carried_by;
    use ebs_snapper_core::{
        plan_retention, Attachment, ConfigurationSet, Instance, Inventory, Keep, RetentionAction, Snapshot,
        SnapshotState, StoredConfiguration, Tags,
    };
    use proptest::prelude::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 15).unwrap()
    }

    const NAMES: [&str; 4] = ["daily", "weekly", "monthly", "yearly"];

    /// (tiers: (minimum, archive)), history oldest first: (tier bits, DeleteOn days from today,
    /// completed, archived already)
    type Spec = (Vec<(u32, bool)>, Vec<(u8, i64, bool, bool)>);

    fn spec() -> impl Strategy<Value = Spec> {
        (
            proptest::collection::vec((0u32..4, any::<bool>()), 1..=4),
            proptest::collection::vec(
                (0u8..32, -40i64..400, proptest::bool::weighted(0.9), proptest::bool::weighted(0.1)),
                0..24,
            ),
        )
    }

    fn scene(spec: &Spec) -> (ConfigurationSet, Inventory) {
        let (tiers, history) = spec;
        let schedules: Vec<String> = tiers
            .iter()
            .enumerate()
            .map(|(i, (minimum, archive))| {
                format!(r#"{{"name": "{}", "frequency": "1 day", "retention": "1 day", "minimum": {minimum}, "archive": {archive}}}"#, NAMES[i])
            })
            .collect();
        let text = format!(r#"{{"match": {{"tag:backup": "yes"}}, "schedules": [{}]}}"#, schedules.join(","));
        let configs = ConfigurationSet::from_stored(&[StoredConfiguration { id: "c".into(), text }]);
        let mut inventory = Inventory { region: "us-east-1".into(), ..Default::default() };
        inventory.matched.insert("c".into(), vec!["i-1".into()]);
        inventory.instances.insert(
            "i-1".into(),
            Instance {
                id: "i-1".into(),
                state: "running".into(),
                image_id: None,
                root_device: None,
                tags: Tags::new(),
                volumes: vec![Attachment { device: "/dev/sda1".into(), volume_id: "vol-1".into() }],
            },
        );
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for (n, (bits, delete_on, completed, archived)) in history.iter().enumerate() {
            let mut tags: Tags =
                [(DELETE_ON.to_string(), (today() + Duration::days(*delete_on)).format("%Y-%m-%d").to_string())].into();
            // Bit 4 names an unknown tier; no bit at all leaves the tag off.
            let mut names: Vec<&str> = (0..tiers.len()).filter(|i| bits & (1 << i) != 0).map(|i| NAMES[i]).collect();
            if bits & 16 != 0 {
                names.push("gone");
            }
            if !names.is_empty() {
                tags.insert(TAG_TIER.into(), names.join(","));
            }
            inventory.snapshots.push(Snapshot {
                id: format!("snap-{n:02}"),
                volume_id: Some("vol-1".into()),
                is_copy: false,
                start_time: start + Duration::hours(n as i64),
                state: if *completed { SnapshotState::Completed } else { SnapshotState::Pending },
                tags,
                description: String::new(),
                archived: *archived,
                state_message: None,
            });
        }
        (configs, inventory)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn no_tier_drops_below_its_minimum_and_deletions_are_oldest_first(spec in spec()) {
            let (configs, inventory) = scene(&spec);
            let tiers = &configs.valid[0].configuration.tiers;
            let plan = plan_retention(&configs, &inventory, &BTreeSet::new(), today());
            let deleted: BTreeSet<&str> = plan.deletes().map(|d| d.snapshot_id).collect();
            let archived: BTreeSet<&str> = plan.archive_ids().into_iter().collect();
            prop_assert!(deleted.is_disjoint(&archived));
            let snaps = &inventory.snapshots; // oldest first
            for (t, tier) in tiers.iter().enumerate() {
                let carrying: Vec<&Snapshot> = snaps
                    .iter()
                    .filter(|s| s.state == SnapshotState::Completed && carried_by(&s.tags, tiers).contains(t))
                    .collect();
                let left = carrying.iter().filter(|s| !deleted.contains(s.id.as_str())).count();
                prop_assert!(left >= (tier.minimum as usize).min(carrying.len()),
                    "tier {} left with {} of minimum {}", tier.name, left, tier.minimum);
                // Within the tier, every deleted snapshot is older than every one the tier's minimum kept.
                let newest_deleted = carrying.iter().rposition(|s| deleted.contains(s.id.as_str()));
                for d in &plan.decisions {
                    if let RetentionAction::Keep(Keep::Newest { tier: Some(name), .. }) = &d.action {
                        if name == &tier.name {
                            let kept = carrying.iter().position(|s| s.id == d.snapshot_id).expect("carries its tier");
                            prop_assert!(newest_deleted.is_none_or(|n| n < kept), "{} kept, a newer one deleted", d.snapshot_id);
                        }
                    }
                }
            }
            let newest_completed = snaps.iter().rev().find(|s| s.state == SnapshotState::Completed).map(|s| s.id.as_str());
            for s in snaps {
                let delete_on = ebs_snapper_core::parse_delete_on(s.tags.get(DELETE_ON).unwrap()).unwrap();
                if deleted.contains(s.id.as_str()) {
                    prop_assert!(delete_on <= today() && s.state == SnapshotState::Completed, "{} deleted early", s.id);
                }
                if archived.contains(s.id.as_str()) {
                    prop_assert!(Some(s.id.as_str()) != newest_completed, "{} is the newest", s.id);
                    prop_assert!(delete_on >= today() + Duration::days(ARCHIVE_MIN_DAYS), "{} is deleted within 90 days", s.id);
                    prop_assert!(!s.archived && s.state == SnapshotState::Completed);
                    prop_assert!(carried_by(&s.tags, tiers).indices().any(|t| tiers[t].archive), "{} carries no archive tier", s.id);
                }
            }
        }
    }
}
