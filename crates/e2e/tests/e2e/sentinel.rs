//! Herald on a master and replica watched by Redis Sentinel
//! (`redis-sentinel://`): a master killed during a burst is failed over by
//! the Sentinel, and every service finds the new master through it.

use testkit::sentinel::RedisSentinel;

use crate::failover::{burst_through_a_failover, failover_vars};
use crate::support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_during_a_burst_loses_nothing_answered_202_with_one_replica_ack() {
    let mut redis = RedisSentinel::start().await;
    let stack = Stack::new().await;
    let vars = failover_vars(&stack, &redis.url(), "1");
    let (accepted, lost) = burst_through_a_failover(&stack, &vars, async || {
        let victim = redis.master();
        redis.kill(victim);
        let promoted = redis.wait_for_failover(victim).await;
        // Until the dead master is back as a replica, the promoted one has
        // none to confirm appends: ingest answers 503 and producers retry.
        redis.restart(victim).await;
        redis.wait_until_replicated().await;
        eprintln!(
            "master {victim} killed; the sentinel promoted {promoted}; {victim} back as its replica"
        );
    })
    .await;
    assert_eq!(
        lost, 0,
        "ids answered 202 == ids stored ({accepted} accepted)"
    );
    eprintln!("sentinel, min_replicas_acks = 1: {accepted} accepted, 0 lost through a failover");
}
