//! Which tiers a snapshot belongs to (SPEC §11): the names in its `ebs-snapper:tier` tag, as a
//! small set of indices into its configuration's tiers.

use crate::config::Tier;
use crate::inventory::Tags;
use crate::tags::TAG_TIER;

/// A set of tiers of one configuration, by index (a configuration has at most four).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TierSet(u8);

impl TierSet {
    pub const FIRST: TierSet = TierSet(1);

    pub fn of(index: usize) -> TierSet {
        TierSet(1 << index)
    }

    pub fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn insert(&mut self, index: usize) {
        self.0 |= 1 << index;
    }

    pub fn union(self, other: TierSet) -> TierSet {
        TierSet(self.0 | other.0)
    }

    /// The indices in the set, in schedule order.
    pub fn indices(self) -> impl Iterator<Item = usize> {
        (0..8).filter(move |i| self.contains(*i))
    }

    /// The tiers' names joined by `,` in schedule order: the `ebs-snapper:tier` value.
    pub fn names(self, tiers: &[Tier]) -> String {
        self.indices().filter_map(|i| tiers.get(i)).map(|t| t.name.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// The tiers of `tiers` a snapshot carries, from its tag value (`daily,weekly`). A snapshot
/// without the tag, or naming none of the configuration's tiers (a tier renamed or removed),
/// counts as carrying the first tier: it is then protected by that tier's minimum rather than
/// by none, and makes that tier not due rather than due at once.
pub fn carried(tag: Option<&str>, tiers: &[Tier]) -> TierSet {
    let mut set = TierSet::default();
    if let Some(value) = tag {
        for name in value.split(',').map(str::trim) {
            if let Some(i) = tiers.iter().position(|t| t.name == name) {
                set.insert(i);
            }
        }
    }
    if set.is_empty() {
        TierSet::FIRST
    } else {
        set
    }
}

/// [`carried`] from a snapshot's tags.
pub fn carried_by(tags: &Tags, tiers: &[Tier]) -> TierSet {
    carried(tags.get(TAG_TIER), tiers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn tiers(names: &[&str]) -> Vec<Tier> {
        names
            .iter()
            .map(|n| Tier {
                name: n.to_string(),
                retention: std::time::Duration::from_secs(86_400),
                minimum: 1,
                frequency: Schedule::parse("1 day").unwrap(),
                archive: false,
                lock: None,
            })
            .collect()
    }

    #[test]
    fn a_snapshot_carries_the_tiers_its_tag_names_or_else_the_first() {
        let t = tiers(&["daily", "weekly", "monthly"]);
        assert_eq!(carried(Some("weekly,monthly"), &t).indices().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(carried(Some("monthly, daily"), &t).names(&t), "daily,monthly");
        assert_eq!(carried(None, &t), TierSet::FIRST);
        assert_eq!(carried(Some("hourly"), &t), TierSet::FIRST, "a removed tier falls back to the first");
        assert_eq!(TierSet::of(1).union(TierSet::of(0)).names(&t), "daily,weekly");
    }
}
