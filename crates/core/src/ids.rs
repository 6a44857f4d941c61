//! What an AWS account id and a region name look like (shared by configurations, events and the
//! planners).

/// True for a 12-digit AWS account id.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-4`...
pub fn is_region_name(text: &str) -> bool {
    // The longest region names are about 15 characters (`ap-southeast-7`, `us-isob-east-1`).
    if text.len() > 32 {
        return false;
    }
    let parts: Vec<&str> = text.split('-').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else { return false };
    parts.len() >= 3
        && parts.len() <= 4
        && first.len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1].iter().all(|p| p.chars().all(|c| c.is_ascii_lowercase()))
        && last.len() <= 2
        && last.chars().all(|c| c.is_ascii_digit())
}

/// `snap-` and 8 or 17 hex digits, as EC2 names snapshots.
pub fn is_snapshot_id(text: &str) -> bool {
    text.strip_prefix("snap-")
        .is_some_and(|hex| matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}
