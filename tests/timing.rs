//! Account hunters learn nothing from the clock: every `/auth/*` route that takes an address answers an
//! address with an account in the same time as one without (median of 30 each, requests interleaved).
//! A binary of its own, so that no other test shares the machine while it measures; a route is measured
//! again (up to three times) when other work on the machine skewed one measurement, and fails only if every
//! measurement tells the two apart, as a real difference does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

#[allow(dead_code)] // the API tests' helpers; this binary uses a few
#[path = "api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use helpers::TestApp;
use serde_json::{json, Value};

const ROUNDS: usize = 30;

/// A route's request body for an address.
type BodyFor = fn(&str) -> Value;
const PASSWORD: &str = "a long and unusual password";

/// Median answer time of `body_for(address)` posted to `path` for the known and the unknown addresses,
/// alternating which goes first; each answer's status must be `status` for both.
async fn medians(
    app: &TestApp,
    path: &str,
    status: u16,
    known: &[String],
    body_for: impl Fn(&str) -> Value,
) -> (Duration, Duration) {
    let (mut with_account, mut without) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS + 3 {
        let account = &known[round % known.len()];
        let stranger = format!("nobody{round}@example.com");
        let mut timed = Vec::new();
        let order = if round % 2 == 0 { [account, &stranger] } else { [&stranger, account] };
        for address in order {
            let started = Instant::now();
            let r = app.post(path, body_for(address)).await;
            timed.push((address == account, started.elapsed()));
            assert_eq!(r.status.as_u16(), status, "{path} for {address}: {}", r.text);
        }
        // The first rounds warm caches and connections up.
        if round >= 3 {
            for (is_account, took) in timed {
                if is_account {
                    with_account.push(took)
                } else {
                    without.push(took)
                }
            }
        }
    }
    (median(with_account), median(without))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn every_auth_route_answers_accounts_and_strangers_in_the_same_time() {
    let app = TestApp::spawn().await;
    // Several accounts, so that no factor's failure budget runs out while measuring: four for each of
    // the (at most) three measurements of a route.
    let mut known = Vec::new();
    for i in 0..12 {
        let email = format!("member{i}@example.com");
        app.register_and_login(&email, PASSWORD).await;
        known.push(email);
    }
    let routes: [(&str, u16, BodyFor); 5] = [
        ("/auth/login", 401, |email| json!({"email": email, "password": "not the password at all"})),
        ("/auth/register", 202, |email| json!({"email": email, "password": PASSWORD, "name": "Hunter"})),
        ("/auth/password-reset", 202, |email| json!({"email": email})),
        ("/auth/request-code", 202, |email| json!({"email": email, "channel": "email"})),
        ("/auth/verify-code", 401, |email| json!({"email": email, "code": "000000"})),
    ];
    let mut report = Vec::new();
    for (path, status, body_for) in routes {
        let mut equal = false;
        for accounts in known.chunks(4) {
            let (with_account, without) = medians(&app, path, status, accounts, body_for).await;
            // Within noise: a path that skipped the password hash or a store write differs by far more.
            let (slow, fast) = (with_account.max(without), with_account.min(without));
            equal = slow - fast <= slow / 5 + Duration::from_micros(300);
            report.push(format!("{path}: account {with_account:?}, stranger {without:?}"));
            if equal {
                break;
            }
        }
        assert!(equal, "{path} tells accounts apart by time: {}", report.join("; "));
    }
    println!("{}", report.join("\n"));
}
