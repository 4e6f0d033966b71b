//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// The bid of the first element with this role and name in an AXTree text.
pub fn bid_of(axtree: &str, role: &str, name: &str) -> Option<String> {
    axtree.lines().find_map(|line| {
        let line = line.trim_start_matches('\t');
        let rest = line.strip_prefix('[')?;
        let (bid, rest) = rest.split_once("] ")?;
        let single = format!("{role} '{name}'");
        let double = format!("{role} \"{name}\"");
        (rest.starts_with(&single) || rest.starts_with(&double)).then(|| bid.to_string())
    })
}

/// All bids of an AXTree text.
pub fn bids(axtree: &str) -> Vec<String> {
    axtree.lines().filter_map(|l| l.trim_start_matches('\t').strip_prefix('[')).filter_map(|r| r.split_once(']').map(|(b, _)| b.to_string())).collect()
}
