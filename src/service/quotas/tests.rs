use std::collections::{BTreeMap, HashMap};

use super::decide::{Job, QuotaState, decide};
use crate::domain::{Error, Metering, Quota, TenantId};
use crate::service::tenants::RequestKey;
use crate::store::{Usage, UsageKey};

const DAY: i64 = 86_400;
/// 2026-11-23T12:00:00Z
const NOW: i64 = 1_795_435_200;

fn messages(limit: i64) -> Quota {
    Quota {
        limit,
        metering: Metering::Counter { window_secs: DAY },
    }
}

fn tenant() -> TenantId {
    TenantId::from(uuid::Uuid::nil())
}

fn job(amount: i64, limit: i64) -> Job {
    Job {
        tenant: tenant(),
        items: vec![("messages_per_day".into(), messages(limit), amount)],
        key: None,
    }
}

fn locked(window_start: i64, used: i64) -> BTreeMap<UsageKey, Usage> {
    BTreeMap::from([(
        (tenant(), "messages_per_day".to_owned()),
        Usage { window_start, used },
    )])
}

#[test]
fn a_batch_admits_in_order_until_the_limit() {
    let today = NOW - NOW % DAY;
    let jobs = vec![job(3, 10), job(5, 10), job(4, 10), job(2, 10)];
    let (write, answers) = decide(&jobs, &locked(today, 0), &HashMap::new(), NOW);
    let used: Vec<Option<i64>> = answers
        .iter()
        .map(|a| a.as_ref().ok().map(|s| s[0].used))
        .collect();
    assert_eq!(used, [Some(3), Some(8), None, Some(10)]);
    assert_eq!(
        write.usage,
        vec![(
            (tenant(), "messages_per_day".to_owned()),
            Usage {
                window_start: today,
                used: 10
            }
        )]
    );
    let Err(Error::QuotaExhausted {
        retry_after,
        violations,
        ..
    }) = &answers[2]
    else {
        panic!("the third job must be refused: {:?}", answers[2]);
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(retry_after.map(|d| d.as_secs()), Some(12 * 3600));
}

#[test]
fn a_new_window_starts_from_zero() {
    let yesterday = NOW - NOW % DAY - DAY;
    let (write, answers) = decide(&[job(10, 10)], &locked(yesterday, 10), &HashMap::new(), NOW);
    assert!(answers[0].is_ok());
    assert_eq!(
        write.usage[0].1,
        Usage {
            window_start: NOW - NOW % DAY,
            used: 10
        }
    );
}

#[test]
fn all_or_nothing_across_items() {
    let users = Quota {
        limit: 2,
        metering: Metering::Gauge,
    };
    let both = Job {
        tenant: tenant(),
        items: vec![
            ("messages_per_day".into(), messages(100), 1),
            ("users".into(), users, 3),
        ],
        key: None,
    };
    let (write, answers) = decide(&[both], &BTreeMap::new(), &HashMap::new(), NOW);
    let Err(Error::QuotaExhausted {
        retry_after,
        violations,
        ..
    }) = &answers[0]
    else {
        panic!("over the users limit must be refused");
    };
    assert_eq!(violations[0].resource, "users");
    assert_eq!(*retry_after, None, "waiting does not help a gauge");
    assert!(write.usage.is_empty() && write.records.is_empty());
}

#[test]
fn a_repeated_request_id_in_one_batch_counts_once() {
    let key = RequestKey {
        id: uuid::Uuid::now_v7(),
        request_hash: "h".into(),
    };
    let mut first = job(4, 10);
    first.key = Some(key.clone());
    let mut again = job(4, 10);
    again.key = Some(key.clone());
    let mut other = job(4, 10);
    other.key = Some(RequestKey {
        request_hash: "different".into(),
        ..key
    });
    let today = NOW - NOW % DAY;
    let (write, answers) = decide(
        &[first, again, other],
        &locked(today, 0),
        &HashMap::new(),
        NOW,
    );
    let first: &Vec<QuotaState> = answers[0].as_ref().unwrap();
    assert_eq!(answers[1].as_ref().unwrap(), first);
    assert!(matches!(answers[2], Err(Error::InvalidArgument(_))));
    assert_eq!(write.usage[0].1.used, 4);
    assert_eq!(write.records.len(), 1);
}

#[test]
fn tenants_in_one_batch_are_counted_apart() {
    let other = TenantId::from(uuid::Uuid::max());
    let mut theirs = job(6, 10);
    theirs.tenant = other;
    let jobs = [job(6, 10), theirs, job(6, 10)];
    let (write, answers) = decide(&jobs, &locked(NOW - NOW % DAY, 0), &HashMap::new(), NOW);
    assert!(
        answers[0].is_ok() && answers[1].is_ok(),
        "each tenant has its own 10"
    );
    assert!(answers[2].is_err(), "the first tenant's second 6 is over");
    let written: Vec<(TenantId, i64)> =
        write.usage.iter().map(|((t, _), u)| (*t, u.used)).collect();
    assert_eq!(written, [(tenant(), 6), (other, 6)]);
}

#[test]
fn a_window_later_than_the_clock_is_counted_in_and_never_replaced_by_an_earlier_one() {
    let today = NOW - NOW % DAY;
    let tomorrow = today + DAY;
    // Another replica, its clock ahead, already counts in tomorrow's window.
    let jobs = vec![job(3, 10), job(5, 10)];
    let (write, answers) = decide(&jobs, &locked(tomorrow, 4), &HashMap::new(), NOW);
    let used: Vec<Option<(i64, i64)>> = answers
        .iter()
        .map(|a| a.as_ref().ok().map(|s| (s[0].window_start, s[0].used)))
        .collect();
    assert_eq!(
        used,
        [Some((tomorrow, 7)), None],
        "4 + 3 fit, 4 + 3 + 5 do not"
    );
    assert_eq!(
        write.usage,
        vec![(
            (tenant(), "messages_per_day".to_owned()),
            Usage {
                window_start: tomorrow,
                used: 7
            }
        )]
    );
    // An earlier stored window is a day that has ended: it counts from zero.
    let (write, _) = decide(&[job(2, 10)], &locked(today - DAY, 9), &HashMap::new(), NOW);
    assert_eq!(
        write.usage[0].1,
        Usage {
            window_start: today,
            used: 2
        }
    );
}
