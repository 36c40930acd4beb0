//! The query API: listing with filters and keyset pages, and its problems.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::testing::assert_problem;
use support::View;
use uuid::Uuid;

/// Pages through `path` (which has a `?`) with `limit`; every page's orders in order.
async fn all_pages(view: &View, path: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            None => format!("{path}&limit={limit}"),
            Some(cursor) => format!("{path}&limit={limit}&after={cursor}"),
        };
        let page = view.get_ok(&url).await;
        let orders = page["orders"].as_array().unwrap().clone();
        assert!(orders.len() <= limit, "{page}");
        pages.push(orders);
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return pages,
        }
    }
}

fn ids(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Newest first, ties by order id descending: the API's order.
fn expected_order(mut orders: Vec<(i64, Uuid)>) -> Vec<String> {
    orders.sort_by(|a, b| b.cmp(a));
    orders.into_iter().map(|(_, id)| id.to_string()).collect()
}

/// Places 25 orders of customer `pager`, the `i`-th at second `at(i)`; returns
/// their (second, order id).
async fn place_pagers_orders(view: &mut View, at: impl Fn(i64) -> i64) -> Vec<(i64, Uuid)> {
    let mut placed = Vec::new();
    for i in 0..25 {
        let order = Uuid::now_v7();
        view.place(order, "pager", at(i)).await;
        placed.push((at(i), order));
    }
    placed
}

#[tokio::test]
async fn paging_through_a_customers_orders_neither_repeats_nor_skips() {
    let mut view = View::spawn().await;
    // Three orders share each placing time: the order id breaks the tie.
    let mine = place_pagers_orders(&mut view, |i| i / 3).await;
    for i in (0..25).step_by(5) {
        view.place(Uuid::now_v7(), "someone-else", i / 3).await;
    }

    let pages = all_pages(&view, "/orders?customer_id=pager", 10).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let seen: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
    assert_eq!(seen, expected_order(mine.clone()));
    assert!(pages.iter().flatten().all(|o| o["customer_id"] == "pager"));
}

#[tokio::test]
async fn orders_projected_while_paging_do_not_disturb_the_pages() {
    let mut view = View::spawn().await;
    let mut mine = place_pagers_orders(&mut view, |i| i).await;
    let first = view.get_ok("/orders?customer_id=pager&limit=10").await;
    let cursor = first["next"].as_str().unwrap().to_owned();

    // A newer order sorts before the cursor (into the page already read); an order
    // placed long ago but projected only now sorts after it and is still reached.
    let (newer, late) = (Uuid::now_v7(), Uuid::now_v7());
    view.place(newer, "pager", 1_000).await;
    view.place(late, "pager", -1_000).await;

    let mut seen = ids(first["orders"].as_array().unwrap());
    let mut after = Some(cursor);
    while let Some(cursor) = after {
        let page = view
            .get_ok(&format!(
                "/orders?customer_id=pager&limit=10&after={cursor}"
            ))
            .await;
        seen.extend(ids(page["orders"].as_array().unwrap()));
        after = page["next"].as_str().map(str::to_owned);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no order twice: {seen:?}");
    mine.push((-1_000, late));
    assert_eq!(seen, expected_order(mine));
    assert!(!seen.contains(&newer.to_string()));
}

#[tokio::test]
async fn orders_are_listed_by_status_and_by_customer_and_status() {
    let mut view = View::spawn().await;
    let mut confirmed = Vec::new();
    let mut cancelled = Vec::new();
    let mut placed = Vec::new();
    for i in 0..12 {
        let order = Uuid::now_v7();
        let customer = if i % 2 == 0 { "even" } else { "odd" };
        view.place(order, customer, i).await;
        match i % 3 {
            0 => {
                view.feed("OrderConfirmed", order, json!({"order_id": order}), i + 100)
                    .await;
                confirmed.push((i, order, customer));
            }
            1 => {
                let reason = json!({"order_id": order, "reason": "changed my mind"});
                view.feed("OrderCancelled", order, reason, i + 100).await;
                cancelled.push((i, order, customer));
            }
            _ => placed.push((i, order, customer)),
        }
    }
    let keys = |orders: &[(i64, Uuid, &str)], customer: Option<&str>| {
        expected_order(
            orders
                .iter()
                .filter(|(_, _, c)| customer.is_none_or(|want| want == *c))
                .map(|(i, id, _)| (*i, *id))
                .collect(),
        )
    };

    let pages = all_pages(&view, "/orders?status=confirmed", 3).await;
    let seen: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
    assert_eq!(seen, keys(&confirmed, None));
    assert!(pages
        .iter()
        .flatten()
        .all(|o| o["order_status"] == "confirmed"));

    let page = view
        .get_ok("/orders?status=cancelled&customer_id=odd")
        .await;
    assert_eq!(
        ids(page["orders"].as_array().unwrap()),
        keys(&cancelled, Some("odd"))
    );
    assert_eq!(page["next"], Value::Null);

    let page = view.get_ok("/orders?status=placed").await;
    assert_eq!(ids(page["orders"].as_array().unwrap()), keys(&placed, None));

    let everything = view.get_ok("/orders").await;
    assert_eq!(everything["orders"].as_array().unwrap().len(), 12);
    assert_eq!(everything["next"], Value::Null);
}

#[tokio::test]
async fn every_bad_query_parameter_is_a_400_problem_naming_it() {
    let view = View::spawn().await;
    let cursor_out_of_range = format!("7fffffffffffffff{}", Uuid::now_v7().simple());
    let cases = [
        ("status=shipped", "status"),
        ("status=PLACED", "status"),
        ("status=placed&status=cancelled", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-3", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("after=not-a-cursor", "after"),
        ("after=", "after"),
        (&format!("after={cursor_out_of_range}"), "after"),
        ("customer_id=", "customer_id"),
        (&format!("customer_id={}", "c".repeat(101)), "customer_id"),
        ("customer_id=a%00b", "NUL"),
        ("colour=red", "colour"),
    ];
    for (query, needle) in cases {
        let response = view.get(&format!("/orders?{query}")).await;
        assert_problem(response, StatusCode::BAD_REQUEST, needle).await;
    }
    let response = view.get("/orders/not-a-uuid").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "not-a-uuid").await;
}

#[tokio::test]
async fn an_unknown_order_is_a_404_problem() {
    let view = View::spawn().await;
    let order = Uuid::now_v7();
    let response = view.get(&format!("/orders/{order}")).await;
    assert_problem(response, StatusCode::NOT_FOUND, &order.to_string()).await;
}

#[tokio::test]
async fn the_openapi_document_describes_both_routes() {
    let view = View::spawn().await;
    let doc = view.get_ok("/openapi.json").await;
    assert!(doc["paths"]["/orders"]["get"].is_object(), "{doc}");
    assert!(doc["paths"]["/orders/{id}"]["get"].is_object(), "{doc}");
    let params: Vec<&str> = doc["paths"]["/orders"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["customer_id", "status", "limit", "after"]);
}
