//! The rules a push must satisfy against a component's registered history, which is
//! append-only and immutable: a tenant that ran a migration must never find its text changed,
//! a migration inserted before one that tenants already ran, or a hole where one was.

use std::collections::{BTreeMap, BTreeSet};

use super::{ComponentId, MigrationVersion};
use crate::domain::Error;

/// What a push holds, against the registered history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Versions already registered with the same checksum, oldest first.
    pub unchanged: Vec<MigrationVersion>,
    /// The positions, in the pushed list, of the migrations to register, oldest first.
    pub new: Vec<usize>,
}

/// Sorts the `pushed` migrations (version and checksum, no version twice) of `component` into
/// unchanged and new, against the `registered` history (version and checksum, oldest first);
/// refuses, with FAILED_PRECONDITION details naming the versions, a registered version sent
/// with another checksum, a new version that sorts before the latest registered one, and a
/// registered version left out between two versions sent.
pub fn classify(
    component: &ComponentId,
    registered: &[(MigrationVersion, String)],
    pushed: &[(MigrationVersion, String)],
) -> Result<Classified, Error> {
    let known: BTreeMap<&MigrationVersion, &str> =
        registered.iter().map(|(v, c)| (v, c.as_str())).collect();
    let name = |v: &MigrationVersion| format!("components/{component}/migrations/{v}");

    let mut order: Vec<usize> = (0..pushed.len()).collect();
    order.sort_by(|a, b| pushed[*a].0.cmp(&pushed[*b].0));

    let mut unchanged = Vec::new();
    let mut new = Vec::new();
    let mut changed = Vec::new();
    for i in order {
        let (version, checksum) = &pushed[i];
        match known.get(version) {
            Some(registered) if *registered == checksum => unchanged.push(version.clone()),
            Some(registered) => changed.push((version, *registered, checksum.as_str())),
            None => new.push(i),
        }
    }
    if let Some((version, registered, sent)) = changed.first() {
        let message = format!(
            "migration {version} of component {component} is registered with checksum \
             {registered}, and was pushed with checksum {sent}: a registered migration never \
             changes; add a new migration instead"
        );
        return Err(Error::HistoryConflict {
            reason: "MIGRATION_CHANGED",
            message,
            metadata: vec![
                ("component", component.to_string()),
                ("version", version.to_string()),
                ("registered_checksum", (*registered).to_owned()),
                ("pushed_checksum", (*sent).to_owned()),
            ],
            violations: changed
                .iter()
                .map(|(v, r, s)| {
                    (
                        name(v),
                        format!("{v} is registered with checksum {r}, pushed with {s}"),
                    )
                })
                .collect(),
        });
    }

    if let Some((latest, _)) = registered.iter().max_by(|a, b| a.0.cmp(&b.0)) {
        let early: Vec<&MigrationVersion> = new
            .iter()
            .map(|i| &pushed[*i].0)
            .filter(|v| *v < latest)
            .collect();
        if let Some(first) = early.first() {
            return Err(Error::HistoryConflict {
                reason: "VERSION_BEFORE_LATEST",
                message: format!(
                    "migration {first} of component {component} is new but sorts before \
                     {latest}, the latest registered one: tenants may have run {latest} \
                     already; give the new migration a version after it"
                ),
                metadata: vec![
                    ("component", component.to_string()),
                    ("version", first.to_string()),
                    ("latest_version", latest.to_string()),
                ],
                violations: early
                    .iter()
                    .map(|v| (name(v), format!("{v} sorts before the latest, {latest}")))
                    .collect(),
            });
        }
    }

    let sent: BTreeSet<&MigrationVersion> = pushed.iter().map(|(v, _)| v).collect();
    if let (Some(first), Some(last)) = (sent.first(), sent.last()) {
        let missing: Vec<&MigrationVersion> = registered
            .iter()
            .map(|(v, _)| v)
            .filter(|v| *first < *v && *v < *last && !sent.contains(v))
            .collect();
        if let Some(gap) = missing.first() {
            return Err(Error::HistoryConflict {
                reason: "MIGRATION_MISSING",
                message: format!(
                    "the push leaves out migration {gap} of component {component}, which is \
                     registered between {first} and {last}: push the whole history or only \
                     its new tail"
                ),
                metadata: vec![
                    ("component", component.to_string()),
                    ("version", gap.to_string()),
                ],
                violations: missing
                    .iter()
                    .map(|v| {
                        (
                            name(v),
                            format!("{v} is registered but missing from the push"),
                        )
                    })
                    .collect(),
            });
        }
    }

    Ok(Classified { unchanged, new })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> MigrationVersion {
        MigrationVersion::parse(text).unwrap()
    }

    fn set(items: &[(&str, &str)]) -> Vec<(MigrationVersion, String)> {
        items.iter().map(|(a, b)| (v(a), (*b).to_owned())).collect()
    }

    fn billing() -> ComponentId {
        ComponentId::parse("billing").unwrap()
    }

    fn reason(result: Result<Classified, Error>) -> (&'static str, Vec<(&'static str, String)>) {
        match result {
            Err(Error::HistoryConflict {
                reason, metadata, ..
            }) => (reason, metadata),
            other => panic!("expected a history conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_first_push_registers_everything_oldest_first() {
        let pushed = set(&[("0002_b", "2"), ("0001_a", "1")]);
        let classified = classify(&billing(), &[], &pushed).unwrap();
        assert_eq!(classified.new, [1, 0]);
        assert!(classified.unchanged.is_empty());
    }

    #[test]
    fn the_same_history_again_is_unchanged_and_a_longer_one_adds_its_tail() {
        let registered = set(&[("0001_a", "1"), ("0002_b", "2")]);
        let again = classify(&billing(), &registered, &registered).unwrap();
        assert_eq!(again.unchanged, [v("0001_a"), v("0002_b")]);
        assert!(again.new.is_empty());
        let longer = set(&[("0001_a", "1"), ("0002_b", "2"), ("0003_c", "3")]);
        let tail = classify(&billing(), &registered, &longer).unwrap();
        assert_eq!(tail.new, [2]);
        let only_tail = classify(&billing(), &registered, &set(&[("0003_c", "3")])).unwrap();
        assert_eq!(only_tail.new, [0]);
    }

    #[test]
    fn a_changed_body_is_refused_with_both_checksums() {
        let registered = set(&[("0001_a", "1"), ("0002_b", "2")]);
        let (reason, metadata) = reason(classify(
            &billing(),
            &registered,
            &set(&[("0001_a", "1"), ("0002_b", "x")]),
        ));
        assert_eq!(reason, "MIGRATION_CHANGED");
        assert!(metadata.contains(&("version", "0002_b".into())));
        assert!(metadata.contains(&("registered_checksum", "2".into())));
        assert!(metadata.contains(&("pushed_checksum", "x".into())));
    }

    #[test]
    fn a_new_version_before_the_latest_is_refused() {
        let registered = set(&[("0001_a", "1"), ("0003_c", "3")]);
        let (reason, metadata) =
            reason(classify(&billing(), &registered, &set(&[("0002_b", "2")])));
        assert_eq!(reason, "VERSION_BEFORE_LATEST");
        assert!(metadata.contains(&("version", "0002_b".into())));
        assert!(metadata.contains(&("latest_version", "0003_c".into())));
    }

    #[test]
    fn a_registered_version_left_out_between_two_sent_is_a_gap() {
        let registered = set(&[("0001_a", "1"), ("0002_b", "2")]);
        let (reason, metadata) = reason(classify(
            &billing(),
            &registered,
            &set(&[("0001_a", "1"), ("0003_c", "3")]),
        ));
        assert_eq!(reason, "MIGRATION_MISSING");
        assert!(metadata.contains(&("version", "0002_b".into())));
        // Leaving out the start of the history is pushing a tail, not a gap.
        let tail = set(&[("0002_b", "2"), ("0003_c", "3")]);
        assert_eq!(classify(&billing(), &registered, &tail).unwrap().new, [1]);
    }
}
