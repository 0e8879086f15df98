//! Rate limits: 429 with Retry-After, per IP and per address, reset with the clock.

use crate::harness::{Harness, generous_limits};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::net::IpAddr;
use vettid_api::{Limits, Rate};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn registration_is_limited_to_10_per_ip_per_hour() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            register_per_ip: Limits::default().register_per_ip,
            ..generous_limits()
        }
    })
    .await;
    assert_eq!(Limits::default().register_per_ip, Rate::per_hour(10));
    let code = h.invite(json!({"max_uses": 100})).await;
    let register = |n: u32, from: &'static str| {
        h.post("/v1/register")
            .ip(ip(from))
            .json(&json!({
                "first_name": "Ann", "last_name": "Lee",
                "email": format!("r{n}@example.com"), "invite_code": code,
            }))
            .send()
    };
    for n in 0..10 {
        assert_eq!(register(n, "192.0.2.1").await.status, StatusCode::CREATED);
    }
    let before = h.snapshot().await;
    let r = register(10, "192.0.2.1").await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        h.snapshot().await,
        before,
        "a refused request changes nothing"
    );
    // another address is counted apart
    assert_eq!(register(11, "192.0.2.2").await.status, StatusCode::CREATED);
    // the window ends
    h.advance(3600);
    assert_eq!(register(12, "192.0.2.1").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn magic_links_are_limited_per_address_registered_or_not() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            magic_link_per_email: Rate::per_hour(5),
            ..generous_limits()
        }
    })
    .await;
    h.approved_member("limited@example.com").await;
    let send = |from: IpAddr, email: &'static str| {
        h.post("/v1/auth/magic-link")
            .ip(from)
            .json(&json!({ "email": email }))
            .send()
    };
    let member_ip = IpAddr::from([203, 0, 113, 9]);
    for email in ["limited@example.com", "unknown@example.com"] {
        // Issue 11, finding 7: someone else, from five addresses, asks five links each…
        for n in 0..5u8 {
            for _ in 0..5 {
                let r = send(IpAddr::from([198, 51, 100, n]), email).await;
                assert_eq!(r.status, StatusCode::ACCEPTED);
            }
            let r = send(IpAddr::from([198, 51, 100, n]), email).await;
            r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            assert!(r.headers.contains_key("retry-after"));
        }
        // …and the member, from their own address, still gets theirs.
        assert_eq!(send(member_ip, email).await.status, StatusCode::ACCEPTED);
    }
    h.app.background_idle().await;
    assert_eq!(h.take_mails("limited@example.com").len(), 26);
    // Mail to one address stays bounded from everywhere: ten times the allowance per hour.
    for n in 0..30u8 {
        let _ = send(IpAddr::from([192, 0, 2, n]), "limited@example.com").await;
    }
    h.app.background_idle().await;
    assert_eq!(h.take_mails("limited@example.com").len(), 50 - 26);
}

#[tokio::test]
async fn magic_links_are_limited_per_ip() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            magic_link_per_ip: Rate::per_hour(3),
            ..generous_limits()
        }
    })
    .await;
    for n in 0..3 {
        let body = json!({ "email": format!("m{n}@example.com") });
        assert_eq!(
            h.post("/v1/auth/magic-link")
                .json(&body)
                .send()
                .await
                .status,
            StatusCode::ACCEPTED
        );
    }
    let body = json!({ "email": "m9@example.com" });
    let r = h.post("/v1/auth/magic-link").json(&body).send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn guessing_enrollment_codes_is_limited_per_ip() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            enroll_authenticate_per_ip: Rate::per_hour(20),
            ..generous_limits()
        }
    })
    .await;
    assert_eq!(
        Limits::default().enroll_authenticate_per_ip,
        Rate::per_hour(20)
    );
    h.approved_member("guess@example.com").await;
    let session = h.sign_in("guess@example.com").await;
    let s = h.enrollment_session(&session).await;
    let attacker = ip("203.0.113.9");
    let device = crate::harness::TestDevice::fixed();
    let body = |code: &Value, email: &str| {
        json!({
            "code": code,
            "email": email,
            "device_public_key": device.device_hex(),
            "session_public_key": hex::encode(device.session_key),
        })
    };
    // (guesses for an address with no member, so they do not void the member's code)
    for n in 0..20 {
        let guess = json!(format!("ZZZZ-{n:04}"));
        let r = h
            .post("/v1/enroll/authenticate")
            .ip(attacker)
            .json(&body(&guess, "nobody@example.com"))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    // even the right code is refused from that address now
    let r = h
        .post("/v1/enroll/authenticate")
        .ip(attacker)
        .json(&body(&s["code"], "guess@example.com"))
        .send()
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // and still works from the member's own
    let r = h
        .post("/v1/enroll/authenticate")
        .json(&body(&s["code"], "guess@example.com"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn ipv6_clients_are_limited_by_their_48() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            verify_per_ip: Rate::per_hour(2),
            ..generous_limits()
        }
    })
    .await;
    let token = json!({ "token": "A".repeat(43) });
    // Two addresses in two /64s of one /48: one site.
    for from in ["2001:db8:1:2::1", "2001:db8:1:ffff::ffff"] {
        let r = h
            .post("/v1/auth/verify")
            .ip(ip(from))
            .json(&token)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = h
        .post("/v1/auth/verify")
        .ip(ip("2001:db8:1:77:abcd::7"))
        .json(&token)
        .send()
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let r = h
        .post("/v1/auth/verify")
        .ip(ip("2001:db8:2::1"))
        .json(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "another /48");
}

/// Issue 11, finding 7: behind a proxy every client shared the proxy's limits (one client
/// could spend everyone's). With the proxy trusted, each forwarded client has its own; a
/// client that is not the proxy cannot pick its address with the header.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limits() {
    let proxy = ip("10.9.9.9");
    let h = Harness::with(|c| {
        c.limits = Limits {
            verify_per_ip: Rate::per_hour(2),
            ..generous_limits()
        };
        c.trusted_proxies = vec![proxy];
    })
    .await;
    let token = json!({ "token": "A".repeat(43) });
    let verify = |from: IpAddr, forwarded: &str| {
        h.post("/v1/auth/verify")
            .ip(from)
            .header("x-forwarded-for", forwarded)
            .json(&token)
            .send()
    };
    for _ in 0..2 {
        let r = verify(proxy, "203.0.113.1").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    verify(proxy, "203.0.113.1")
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another client through the same proxy is not affected …
    let r = verify(proxy, "203.0.113.2").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // … nor can the first one escape by writing its own header (the proxy appends).
    verify(proxy, "198.51.100.77, 203.0.113.1")
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // A direct client naming addresses is counted as itself.
    let direct = ip("192.0.2.50");
    for n in 0..2 {
        let r = verify(direct, &format!("198.51.100.{n}")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    verify(direct, "198.51.100.99")
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}
