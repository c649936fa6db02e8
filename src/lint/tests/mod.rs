//! The lint's tests: one row per rule, hostile statements included: each must be refused by
//! the rule named, and the ordinary statements of a migration must pass without a finding.

mod postgres;
mod sqlite;

use super::*;

fn rules(linted: &Linted, severity: Severity) -> Vec<&'static str> {
    linted
        .findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.rule)
        .collect()
}

#[test]
fn every_rule_is_described_in_the_docs() {
    let docs = include_str!("../../../docs/migrations.md");
    let section = docs
        .split("\n## The lint")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/migrations.md has a section \"The lint\"");
    for rule in rule::ALL {
        assert!(
            section.contains(&format!("`{rule}`")),
            "{rule} is not in the docs"
        );
    }
}
