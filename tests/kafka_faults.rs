//! Broker faults under load, on a three-node Apache Kafka cluster (KRaft, every node
//! a controller and a broker; replication 3, `min.insync.replicas` 2): `sluice up`
//! publishes and consumes on it while orders arrive through HTTP, and a node is
//! killed (`SIGKILL`), stopped for 30 s (`SIGTERM`) or made to hand its leadership
//! over and take it back. Afterwards every acknowledged event is on the topic in
//! stream order (the relay's re-sends counted), in order_view and in the warehouse,
//! once. Each test runs its own cluster; they run one at a time.
//!
//! `cargo test -p sluice --test kafka_faults -- --nocapture` prints the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_platform::testing::Consumed;
use support::cluster::{
    analyst, check_stream_order, order_view_counts, verify, wait_for_growth, wait_for_records,
    warehouse_orders, Cluster, ClusterPlatform, Load, Probe, Verified, SERIAL,
};

/// Load bounds: far more than a test needs; the test stops the load itself.
const WORKERS: usize = 4;
const MAX_ORDERS: usize = 20_000;
const MAX_LOAD: Duration = Duration::from_secs(900);

/// Events the orders topic must gain before a fault (events are flowing), while a
/// node is down, and after it is back.
const PROGRESS: i64 = 150;

/// Longest wait for any one step of a scenario.
const STEP: Duration = Duration::from_secs(180);

/// Starts the cluster and the platform on it, and checks the orders topic is
/// replicated as production has it.
async fn setup() -> (Cluster, ClusterPlatform, String, i32) {
    let cluster = Cluster::start().await;
    let platform = ClusterPlatform::start(&cluster).await;
    let topic = platform.topic("orders.events");
    let partitions = platform.registry.topics["orders.events"].partitions as i32;
    let layout = cluster
        .probe
        .partitions(Some(&topic))
        .await
        .expect("metadata of the orders topic");
    assert_eq!(layout.len(), partitions as usize, "{layout:?}");
    for p in &layout {
        assert_eq!(
            p.replicas.len(),
            3,
            "{topic} is not replicated 3 times: {p:?}"
        );
    }
    let config = sluice_platform::broker::topic_config(&cluster.bootstrap(), &topic)
        .await
        .expect("configuration of the orders topic");
    assert_eq!(
        config.get("min.insync.replicas").map(String::as_str),
        Some("2"),
        "{topic}: {config:?}"
    );
    (cluster, platform, topic, partitions)
}

/// Starts node `victim` again and waits for it to rejoin and for every ISR to be
/// full: the seconds from the restart to each.
async fn restart_node(cluster: &mut Cluster, probe: &Probe, victim: usize) -> (f64, f64) {
    let restart = Instant::now();
    cluster
        .kafka
        .start_node(victim)
        .await
        .unwrap_or_else(|e| panic!("start node {victim} again: {e}"));
    let rejoined = restart.elapsed().as_secs_f64();
    probe.wait_isr_full(STEP).await;
    (rejoined, restart.elapsed().as_secs_f64())
}

/// Waits until the topic has grown by [`PROGRESS`] records from what it holds now.
async fn progress(probe: &Probe, platform: &mut ClusterPlatform, topic: &str, partitions: i32) {
    let size = probe.topic_size(topic, partitions).await;
    wait_for_records(probe, platform, topic, partitions, size, PROGRESS, STEP).await;
}

fn report(name: &str, v: &Verified, platform: &ClusterPlatform, figures: &str, wall: Instant) {
    eprintln!(
        "{name}: produced (acknowledged) {}, on the topic {} records ({} distinct events, \
         the saga's confirmations included), duplicates the relay re-sent {}; {figures}; \
         relay retries logged {}; checks settled in {:.1} s; wall {:.1} s",
        v.produced,
        v.on_topic,
        v.distinct_on_topic,
        v.duplicates,
        platform.log_count("broker did not acknowledge"),
        v.settle_seconds,
        wall.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_of_a_partition_the_relay_writes_loses_no_acknowledged_event() {
    let _serial = SERIAL.lock().await;
    let wall = Instant::now();
    let (mut cluster, mut platform, topic, partitions) = setup().await;
    let probe = cluster.probe.clone();
    let load = Load::start(&platform, WORKERS, MAX_ORDERS, MAX_LOAD);

    // Events are flowing: the topic grows.
    progress(&probe, &mut platform, &topic, partitions).await;
    let partition = 0;
    let leader = probe.leader(&topic, partition).await;
    let victim = cluster.index_of(leader);
    let before = probe.high_watermarks(&topic, partitions).await;
    let fault = Instant::now();
    cluster.kafka.kill(victim).await;
    let (first_after, partition_resumed) = wait_for_growth(
        &probe,
        &mut platform,
        &topic,
        &before,
        partition as usize,
        fault,
        STEP,
    )
    .await;
    let new_leader = probe.leader(&topic, partition).await;
    assert_ne!(
        new_leader, leader,
        "the killed node still leads {topic}/{partition}"
    );

    // The load goes on with the node down, then it comes back.
    progress(&probe, &mut platform, &topic, partitions).await;
    let (rejoined, isr_full) = restart_node(&mut cluster, &probe, victim).await;
    progress(&probe, &mut platform, &topic, partitions).await;

    let load = load.stop().await;
    let verified = verify(&cluster, &mut platform, &load).await;
    report(
        "kill -9 of a partition leader",
        &verified,
        &platform,
        &format!(
            "node {leader} (leader of {topic}/{partition}) killed, node {new_leader} took over; \
             recovery: first event published {first_after:.1} s after the kill, on the \
             partition {partition_resumed:.1} s; node back in {rejoined:.1} s, ISR full \
             {isr_full:.1} s after the restart; load {:.0} s, {} requests retried",
            load.seconds, load.retries
        ),
        wall,
    );
    let verified_in = platform.verify(&cluster.bootstrap()).await;
    println!(
        "sluice verify passed {:.1} s after the checks",
        verified_in.as_secs_f64()
    );
    platform.stop().await;
    cluster.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_for_30_seconds_loses_no_acknowledged_event() {
    let _serial = SERIAL.lock().await;
    let wall = Instant::now();
    let (mut cluster, mut platform, topic, partitions) = setup().await;
    let probe = cluster.probe.clone();
    let load = Load::start(&platform, WORKERS, MAX_ORDERS, MAX_LOAD);

    progress(&probe, &mut platform, &topic, partitions).await;
    // A leader, so that its partitions must move for the relay to go on.
    let partition = 1;
    let leader = probe.leader(&topic, partition).await;
    let victim = cluster.index_of(leader);
    let before = probe.high_watermarks(&topic, partitions).await;
    let fault = Instant::now();
    // The relay's progress is watched while the node shuts down (a controlled
    // shutdown hands its leadership over first), not only once it has exited.
    let (stopped_in, (first_after, partition_resumed)) = tokio::join!(
        async {
            cluster.kafka.stop(victim).await;
            fault.elapsed().as_secs_f64()
        },
        wait_for_growth(
            &probe,
            &mut platform,
            &topic,
            &before,
            partition as usize,
            fault,
            STEP,
        )
    );

    // The scenario itself: the node stays down for 30 s while orders keep coming.
    let down_for = Duration::from_secs(30);
    let at_stop = probe.topic_size(&topic, partitions).await;
    while fault.elapsed() < down_for {
        platform.assert_running();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = probe.topic_size(&topic, partitions).await - at_stop;
    assert!(
        during > 0,
        "nothing was published while node {leader} was down"
    );
    let (rejoined, isr_full) = restart_node(&mut cluster, &probe, victim).await;
    progress(&probe, &mut platform, &topic, partitions).await;

    let load = load.stop().await;
    let verified = verify(&cluster, &mut platform, &load).await;
    report(
        "a broker stopped for 30 s",
        &verified,
        &platform,
        &format!(
            "node {leader} (leader of {topic}/{partition}) stopped cleanly in {stopped_in:.1} s; \
             recovery: first event published {first_after:.1} s after the stop began, on the \
             partition {partition_resumed:.1} s; {during} records published while it was down; \
             node back in {rejoined:.1} s, ISR full {isr_full:.1} s after the restart; \
             load {:.0} s, {} requests retried",
            load.seconds, load.retries
        ),
        wall,
    );
    let verified_in = platform.verify(&cluster.bootstrap()).await;
    println!(
        "sluice verify passed {:.1} s after the checks",
        verified_in.as_secs_f64()
    );
    platform.stop().await;
    cluster.close().await;
}

/// Waits until order_view and the warehouse hold at least `orders` of the load's
/// orders; returns how long that took.
async fn consumers_reach(
    platform: &mut ClusterPlatform,
    sql: &tokio_postgres::Client,
    customer_id: &str,
    orders: usize,
    what: &str,
) -> f64 {
    let started = Instant::now();
    loop {
        let (view, _) = order_view_counts(platform, customer_id).await;
        let warehouse = warehouse_orders(sql).await;
        if view as usize >= orders && warehouse as usize >= orders {
            return started.elapsed().as_secs_f64();
        }
        platform.assert_running();
        assert!(
            started.elapsed() < STEP,
            "{what}: order_view holds {view} and the warehouse {warehouse} of the {orders} orders \
             acknowledged before it, after {STEP:?}\n{}",
            platform.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_ride_out_a_leader_move() {
    let _serial = SERIAL.lock().await;
    let wall = Instant::now();
    let (mut cluster, mut platform, topic, partitions) = setup().await;
    let probe = cluster.probe.clone();
    let load = Load::start(&platform, WORKERS, MAX_ORDERS, MAX_LOAD);
    let customer = load.customer_id.clone();
    let sql = analyst(&platform).await;

    // Events flow and both consumers (order_view, the analytics sink) read them.
    progress(&probe, &mut platform, &topic, partitions).await;
    let reading = load.acked().min(50);
    consumers_reach(&mut platform, &sql, &customer, reading, "before the move").await;

    // Move the leadership of the orders partitions the node leads: a clean stop
    // hands them over (controlled shutdown) while the consumers fetch from it.
    let partition = 0;
    let leader = probe.leader(&topic, partition).await;
    let victim = cluster.index_of(leader);
    let moved = Instant::now();
    cluster.kafka.stop(victim).await;
    let new_leader = probe.leader(&topic, partition).await;
    let move_seconds = moved.elapsed().as_secs_f64();
    assert_ne!(new_leader, leader, "{topic}/{partition} did not move");
    let acked = load.acked();
    let caught_up_moved = consumers_reach(
        &mut platform,
        &sql,
        &customer,
        acked,
        "after the leader moved away",
    )
    .await;

    // And back: the node returns, and a preferred leader election gives every
    // partition back to its preferred replica while the consumers read.
    let (_, isr_full) = restart_node(&mut cluster, &probe, victim).await;
    let back = Instant::now();
    let election = cluster.preferred_leader_election().await;
    let returned = loop {
        let layout = probe.partitions(Some(&topic)).await.unwrap_or_default();
        if !layout.is_empty() && layout.iter().all(|p| p.leader == p.replicas[0]) {
            break layout;
        }
        platform.assert_running();
        assert!(
            back.elapsed() < STEP,
            "{topic} is not led by its preferred replicas after the election: {layout:?}; \
             the election said {election}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let back_seconds = back.elapsed().as_secs_f64();
    let leader_after = returned
        .iter()
        .find(|p| p.partition == partition)
        .map_or(-1, |p| p.leader);
    let acked = load.acked();
    let caught_up_back = consumers_reach(
        &mut platform,
        &sql,
        &customer,
        acked,
        "after the preferred leader election",
    )
    .await;
    progress(&probe, &mut platform, &topic, partitions).await;

    let load = load.stop().await;
    let verified = verify(&cluster, &mut platform, &load).await;
    // The reactors are consumers too: every order went the whole saga.
    let started = Instant::now();
    let saga = loop {
        let (_, done) = order_view_counts(&platform, &load.customer_id).await;
        if done as usize == load.acks.len() {
            break started.elapsed().as_secs_f64();
        }
        platform.assert_running();
        assert!(
            started.elapsed() < STEP,
            "{done} of {} orders confirmed and shipped in order_view",
            load.acks.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    report(
        "leader move under the consumers",
        &verified,
        &platform,
        &format!(
            "{topic}/{partition} moved from node {leader} to node {new_leader} (clean stop, \
             {move_seconds:.1} s); order_view and the warehouse caught up {caught_up_moved:.1} s \
             later; node back with the ISR full {isr_full:.1} s after its restart; the preferred \
             election gave {topic}/{partition} to node {leader_after} in {back_seconds:.1} s, \
             consumers caught up {caught_up_back:.1} s later; every order confirmed and shipped \
             {saga:.1} s after the checks; load {:.0} s, {} requests retried",
            load.seconds, load.retries
        ),
        wall,
    );
    let verified_in = platform.verify(&cluster.bootstrap()).await;
    println!(
        "sluice verify passed {:.1} s after the checks",
        verified_in.as_secs_f64()
    );
    platform.stop().await;
    cluster.close().await;
}

/// A record of `stream` at `version` (event `event`) at `offset` of `partition`.
fn record(partition: i32, offset: i64, stream: &str, version: i64, event: &str) -> Consumed {
    Consumed {
        partition,
        offset,
        key: stream.to_owned(),
        payload: Vec::new(),
        headers: BTreeMap::from([
            ("stream_version".to_owned(), version.to_string()),
            ("event_id".to_owned(), event.to_owned()),
        ]),
    }
}

/// Records of one partition from `(stream, version, event)` triples, in that order.
fn partition(p: i32, records: &[(&str, i64, &str)]) -> Vec<Consumed> {
    records
        .iter()
        .enumerate()
        .map(|(offset, (s, v, e))| record(p, offset as i64, s, *v, e))
        .collect()
}

/// Records of stream `a` in partition 0 at `versions`, in that order, each event
/// named after its version (`a3` at version 3), as a re-send repeats it.
fn stream_a(versions: &[i64]) -> Vec<Consumed> {
    versions
        .iter()
        .enumerate()
        .map(|(offset, v)| record(0, offset as i64, "a", *v, &format!("a{v}")))
        .collect()
}

#[test]
fn the_order_check_counts_re_sent_runs_and_refuses_gaps_steps_and_impostors() {
    // In order, streams interleaved and in two partitions.
    let mut ok = partition(0, &[("a", 1, "a1"), ("b", 1, "b1"), ("a", 2, "a2")]);
    ok.extend(partition(1, &[("c", 1, "c1"), ("c", 2, "c2")]));
    let order = check_stream_order(&ok).unwrap();
    assert_eq!(order.duplicates, 0);
    assert_eq!(order.streams["a"], ["a1", "a2"]);
    // A batch tail sent again, then the stream goes on; the last record alone again.
    let order = check_stream_order(&stream_a(&[1, 2, 3, 2, 3, 4, 4, 5])).unwrap();
    assert_eq!(order.duplicates, 3);
    assert_eq!(order.streams["a"].len(), 5);

    let refused = |records: Vec<Consumed>, needle: &str| {
        let problem = check_stream_order(&records).unwrap_err();
        assert!(problem.contains(needle), "{problem}");
    };
    // A gap, a step back, a re-sent run skipping a version, and one that stops
    // short of the highest.
    for versions in [&[1, 3][..], &[2, 1], &[1, 2, 3, 1, 3], &[1, 2, 3, 2, 4]] {
        refused(stream_a(versions), "out of order");
    }
    refused(
        partition(0, &[("a", 1, "a1"), ("a", 2, "a2"), ("a", 2, "other")]),
        "two events at version 2",
    );
    let mut split = partition(0, &[("a", 1, "a1")]);
    split.extend(partition(1, &[("a", 2, "a2")]));
    refused(split, "partitions 0 and 1");
}
