//! Quota windows under skewed clocks: two replicas on one catalog, one whose clock lags into
//! the window before the other's, never admit more than the limit in a window, and the stored
//! counter never goes back to an earlier window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use sea_orm::{ConnectionTrait, Statement};
use tenant_plane::clock::Clock;
use tonic::Code;

use crate::quotas::{consume, set_limits, used};
use crate::support::{Db, TestServer, create};

const RESOURCE: &str = "api_calls_per_minute";
const WINDOW: i64 = 60;
const LIMIT: i64 = 100;

/// The counter's row as stored: (window start, used).
async fn stored(db: &sea_orm::DatabaseConnection) -> (i64, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT window_start, used FROM quota_usage WHERE resource = '{RESOURCE}'"),
        ))
        .await
        .expect("read usage")
        .expect("the counter's row");
    (
        row.try_get::<i64>("", "window_start")
            .expect("window_start"),
        row.try_get::<i64>("", "used").expect("used"),
    )
}

/// The window an admitted consumption says it counted in.
fn window_of(answer: &tenant_plane::proto::ConsumeQuotaResponse) -> i64 {
    let state = &answer.quotas[0];
    state.reset_time.as_ref().expect("a counter resets").seconds
        - state.window.as_ref().expect("a counter's window").seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_lags_never_moves_a_window_back_nor_admits_past_the_limit() {
    // Arrange: the ahead replica is 2 s into a new minute; the other's clock lags 5 s, so it is
    // still in the minute before. Both clocks stand still: no window ends during the test.
    let boundary = (chrono::Utc::now().timestamp() / WINDOW + 1) * WINDOW;
    let later = boundary;
    let earlier = boundary - WINDOW;
    let ahead_clock =
        Clock::fixed(chrono::DateTime::from_timestamp(boundary + 2, 0).expect("a time"));
    let lagging_clock = ahead_clock.offset_by(TimeDelta::seconds(-5));
    let ahead = TestServer::start_with(Db::Postgres, |c| c.clock = ahead_clock.clone()).await;
    let lagging = ahead
        .replica_with(|c| c.clock = lagging_clock.clone())
        .await;
    create(&ahead, "skewed").await;
    set_limits(&ahead, "skewed", &[(RESOURCE, LIMIT)]).await;
    let db = ahead.catalog().await;

    // Act 1: the ahead replica starts the later window, then the lagging one consumes.
    let first = ahead
        .quotas()
        .consume_quota(consume("skewed", &[(RESOURCE, 1)]))
        .await
        .expect("first consumption")
        .into_inner();
    assert_eq!(window_of(&first), later);
    let second = lagging
        .quotas()
        .consume_quota(consume("skewed", &[(RESOURCE, 1)]))
        .await
        .expect("the lagging replica's consumption")
        .into_inner();

    // Assert 1: it counted in the later window, and the row stayed there.
    assert_eq!(window_of(&second), later, "counted in the stored window");
    assert!(second.quotas[0].used >= 2, "{second:?}");
    assert_eq!(
        stored(&db).await.0,
        later,
        "the stored window never goes back"
    );

    // Act 2: both replicas hammer the counter while a watcher reads the stored window.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let db = ahead.catalog().await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = later;
            while !done.load(Ordering::Relaxed) {
                let (window, _) = stored(&db).await;
                assert!(
                    window >= last,
                    "the stored window went back: {window} < {last}"
                );
                last = window;
            }
        })
    };
    let admitted: Arc<Mutex<BTreeMap<i64, i64>>> =
        Arc::new(Mutex::new(BTreeMap::from([(later, 2)])));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let mut client = (if c % 2 == 0 { &ahead } else { &lagging }).quotas();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                match client
                    .consume_quota(consume("skewed", &[(RESOURCE, 1)]))
                    .await
                {
                    Ok(answer) => {
                        let window = window_of(&answer.into_inner());
                        *admitted.lock().expect("tally").entry(window).or_default() += 1;
                    }
                    Err(s) => assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("the stored window only moved forward");

    // Assert 2: no window admitted more than the limit; the earlier one admitted nothing.
    let admitted = admitted.lock().expect("tally").clone();
    assert!(
        admitted.values().all(|n| *n <= LIMIT),
        "over the limit in a window: {admitted:?}"
    );
    assert_eq!(admitted.get(&earlier), None, "{admitted:?}");
    // Both replicas see the later window's count, the lagging one included.
    for server in [&ahead, &lagging] {
        assert!(used(server, "skewed").await[RESOURCE] <= LIMIT);
    }
    // Stopped, the replicas give their leases back: the catalog counts exactly what was
    // admitted, in the later window.
    lagging.stop().await;
    ahead.stop().await;
    assert_eq!(stored(&db).await, (later, admitted[&later]));
    db.close().await.expect("close");
}
