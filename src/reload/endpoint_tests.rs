//! `change_endpoints`: the cheap publish of new pods for generated groups.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{change, change_endpoints, ChangeError, Desired, Tables};
use crate::config::gateway::Generated;
use crate::config::model::{Balance, GroupConfig};
use crate::config::parse_yaml;
use crate::metrics::Metrics;
use crate::route::{Inherited, RouteTable};

/// A file config with a route over two generated groups (`shop.a.80` lent
/// the file's least-request policy), published as generation 1.
fn tables() -> Tables {
    let base = parse_yaml(
        "listeners: [{name: web, address: \"127.0.0.1:0\"}]\n\
         groups:\n  shop.a.80: {endpoints: [], balance: least_request}\n\
         routes: [{name: r, rules: [{name: all, backends: [{group: shop.a.80, weight: 90}, {group: shop.b.80, weight: 10}]}]}]\n",
    )
    .unwrap(); // ok: a literal config
    let mut generated = Generated::default();
    for (name, pod) in [("shop.a.80", "10.0.0.1:80"), ("shop.b.80", "10.0.0.2:80")] {
        let group = GroupConfig::new(vec![pod.to_string()]);
        generated.groups.insert(name.to_string(), group);
    }
    let inherited = Inherited::with_metrics(Arc::new(Metrics::new(true)));
    let combined = generated.apply(&base).unwrap(); // ok: a literal config
    let table = crate::compile::compile(&combined, &inherited, 1).unwrap(); // ok: as above
    let desired = Desired {
        base,
        generated: Some(Arc::new(generated)),
        ..Desired::default()
    };
    Tables::new(
        Arc::new(ArcSwap::from_pointee(table)),
        inherited,
        desired,
        None,
    )
}

fn pods(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    list.iter()
        .map(|(g, p)| (g.to_string(), p.iter().map(|a| a.to_string()).collect()))
        .collect()
}

fn group<'t>(t: &'t RouteTable, name: &str) -> &'t crate::upstream::Group {
    t.groups.iter().find(|g| &*g.name == name).unwrap() // ok: test tables
}

fn addresses(t: &RouteTable, name: &str) -> Vec<String> {
    group(t, name)
        .endpoints
        .iter()
        .map(|e| e.authority.to_string())
        .collect()
}

#[test]
fn new_pods_publish_the_next_generation_sharing_the_rest() {
    let t = tables();
    let before = t.routes.load_full();
    let first = Arc::clone(&group(&before, "shop.a.80").endpoints[0].state);
    let more = pods(&[
        ("shop.a.80", &["10.0.0.1:80", "10.0.0.3:80"]),
        ("shop.b.80", &["10.0.0.2:80"]),
    ]);
    assert_eq!(change_endpoints(&t, "test", more.clone()), Ok(Some(2)));
    let after = t.routes.load_full();
    assert_eq!(after.generation, 2);
    assert_eq!(*t.published.borrow(), 2);
    assert_eq!(
        addresses(&after, "shop.a.80"),
        ["10.0.0.1:80", "10.0.0.3:80"]
    );
    assert_eq!(group(&after, "shop.a.80").balance, Balance::LeastRequest);
    assert!(Arc::ptr_eq(&before.rules, &after.rules));
    assert!(Arc::ptr_eq(&before.listeners, &after.listeners));
    let (b0, b1) = (group(&before, "shop.b.80"), group(&after, "shop.b.80"));
    assert!(
        Arc::ptr_eq(&b0.endpoints, &b1.endpoints),
        "unchanged group shared"
    );
    assert!(Arc::ptr_eq(&b0.pools, &b1.pools));
    let carried = &group(&after, "shop.a.80").endpoints[0].state;
    assert!(Arc::ptr_eq(&first, carried), "endpoint state by address");
    // The same pods again: nothing to publish.
    assert_eq!(change_endpoints(&t, "test", more), Ok(None));
    assert_eq!(t.routes.load().generation, 2);
    // A later full change compiles the pods published here.
    assert_eq!(change(&t, None, "test", |_| Ok(())), Ok(3));
    assert_eq!(addresses(&t.routes.load(), "shop.a.80").len(), 2);
}

#[test]
fn an_unknown_group_or_a_bad_address_changes_nothing() {
    let t = tables();
    let unknown = pods(&[("shop.c.80", &["10.0.0.9:80"])]);
    assert!(matches!(
        change_endpoints(&t, "test", unknown),
        Err(ChangeError::Misfit(_))
    ));
    let bad = pods(&[("shop.a.80", &["not an address"])]);
    let Err(ChangeError::Invalid(e)) = change_endpoints(&t, "test", bad) else {
        panic!("a bad address was published");
    };
    assert!(
        e.to_string().contains("groups.shop.a.80.endpoints[0]"),
        "{e}"
    );
    let live = t.routes.load();
    assert_eq!(live.generation, 1);
    assert_eq!(addresses(&live, "shop.a.80"), ["10.0.0.1:80"]);
    assert_eq!(change(&t, None, "test", |_| Ok(())), Ok(2));
    assert_eq!(addresses(&t.routes.load(), "shop.a.80"), ["10.0.0.1:80"]);
}

/// A round shares the unchanged groups themselves (under churn a few of
/// thousands of groups change per round; the rest cost a pointer each), and
/// the pool of an endpoint that left closes with the last table holding it,
/// without a walk over every pool.
#[test]
fn unchanged_groups_are_shared_and_a_gone_endpoints_pool_closes_with_its_table() {
    let t = tables();
    let before = t.routes.load_full();
    let shared = |t: &RouteTable, name: &str| {
        let g = t.groups.iter().find(|g| &*g.name == name);
        Arc::clone(g.unwrap()) // ok: test tables
    };
    let old_pool = Arc::downgrade(&group(&before, "shop.a.80").pools[0]);
    let moved = pods(&[("shop.a.80", &["10.0.0.3:80"])]);
    assert_eq!(change_endpoints(&t, "test", moved), Ok(Some(2)));
    let after = t.routes.load_full();
    assert!(Arc::ptr_eq(
        &shared(&before, "shop.b.80"),
        &shared(&after, "shop.b.80")
    ));
    assert!(old_pool.upgrade().is_some(), "the old table holds its pool");
    drop(before);
    assert!(
        old_pool.upgrade().is_none(),
        "the gone endpoint's pool outlived its last table"
    );
    assert_eq!(t.inherited.upstream.cached_clients(), 2);
}
