//! The web console of the real binary (`consolePort`): each page over HTTP against a broker
//! with known data (the numbers on the page are the broker's), the test-message form, bad
//! input (unknown paths, huge or malformed queries and bodies, a slow client), sends that
//! keep flowing while pages are loaded in a storm, and ACL on the console port. The same
//! pages in a real browser: `tests/console_browser.rs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::response;
use broker_lite::Client;
use common::{http_exchange, http_get, RunningBroker};

const CONSOLE: &str = "consolePort=0\n";

fn console(b: &RunningBroker) -> SocketAddr {
    b.console.expect("the broker printed its console address")
}

/// The page's text without tags (entities left as they are).
fn text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Orders: 4 queues, 12 messages (3 a queue) with keys and tags; group billing committed
/// all of queue 0 and one message of queue 1 (lag 8).
async fn known_data(c: &Client) {
    ops::create_topic(c, "Orders", 4).await.expect("topic");
    for i in 0..12 {
        let mut m = Outgoing::new("Orders", i % 4, format!("{{\"order\":{i}}}"));
        m.keys = Some(format!("order-{i}"));
        m.tags = Some("created".into());
        ops::send(c, "shop", &m).await.expect("send");
    }
    ops::commit(c, "billing", "Orders", 0, 3)
        .await
        .expect("commit");
    ops::commit(c, "billing", "Orders", 1, 1)
        .await
        .expect("commit");
    // Dispatch follows the append: wait until the queues hold everything.
    let deadline = Instant::now() + Duration::from_secs(10);
    for q in 0..4 {
        while ops::queue_number(
            c,
            broker_lite::remoting::codes::request::GET_MAX_OFFSET,
            "Orders",
            q,
            None,
        )
        .await
        .expect("max")
            < Some(3)
        {
            assert!(Instant::now() < deadline, "queue {q} not dispatched");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_shows_the_brokers_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), &format!("{CONSOLE}brokerName=console-b\n"));
    let c = Client::connect(broker.addr).await.expect("connect");
    known_data(&c).await;
    let web = console(&broker);

    let (status, page) = http_get(web, "/", "");
    assert_eq!(status, 200);
    let t = text(&page);
    assert!(t.contains("Broker console-b"), "{t}");
    assert!(t.contains("ASYNC_MASTER"), "{t}");
    assert!(t.contains("Messages stored since start 12"), "{t}");
    assert!(t.contains("Dispatched up to"), "{t}");

    let t = text(&http_get(web, "/topics", "").1);
    // Topic, queues, perm, messages.
    assert!(t.contains("Orders 4 / 4 6 12"), "{t}");

    let t = text(&http_get(web, "/topic?name=Orders", "").1);
    for q in 0..4 {
        assert!(t.contains(&format!("{q} 0 3 3 20")), "queue {q}: {t}");
    }
    assert!(t.contains("billing"), "the group that consumed it: {t}");

    let t = text(&http_get(web, "/groups", "").1);
    // Group, members online, topics, lag (12 - 3 - 1).
    assert!(t.contains("billing 0 Orders 8"), "{t}");

    let t = text(&http_get(web, "/group?name=billing", "").1);
    assert!(t.contains("Lag 8 messages"), "{t}");
    assert!(t.contains("0 3 3 0"), "queue 0 consumed: {t}");
    assert!(t.contains("1 3 1 2"), "queue 1: {t}");
    assert!(t.contains("3 3 0 3 —"), "queue 3 untouched: {t}");

    let (status, page) = http_get(web, "/message?topic=Orders&key=order-5", "");
    assert_eq!(status, 200);
    let t = text(&page);
    assert!(t.contains("1 message(s)"), "{t}");
    assert!(t.contains("Queue / offset 1 / 1"), "{t}");
    assert!(t.contains("KEYS order-5"), "{t}");
    assert!(
        page.contains("{&quot;order&quot;:5}"),
        "the body, escaped: {page}"
    );
    // The same message by queue offset, then by its id.
    let t = text(&http_get(web, "/message?topic=Orders&queue=1&offset=1", "").1);
    assert!(t.contains("KEYS order-5"), "{t}");
    let id = t
        .split("Message id ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("an id")
        .to_owned();
    let t = text(&http_get(web, &format!("/message?id={id}"), "").1);
    assert!(t.contains("KEYS order-5"), "{t}");
    let t = text(&http_get(web, "/message?topic=Orders&key=nothing-such", "").1);
    assert!(t.contains("No message found"), "{t}");
    // A binary body is shown as hex.
    ops::send(
        &c,
        "shop",
        &Outgoing::new("Orders", 0, vec![0u8, 1, 2, 0xff]),
    )
    .await
    .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = text(&http_get(web, "/message?topic=Orders&queue=0&offset=3", "").1);
        if t.contains("00000000 00 01 02 ff") {
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_message_form_sends_through_the_send_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), CONSOLE);
    let c = Client::connect(broker.addr).await.expect("connect");
    ops::create_topic(&c, "Form", 1).await.expect("topic");
    let web = console(&broker);
    let form = "topic=Form&tags=console&keys=from-the-form&body=hello+%3Cworld%3E";
    let (status, head, _) = http_exchange(
        web,
        format!(
            "POST /send HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    assert_eq!(status, 303, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("a Location header")
        .to_owned();
    assert!(location.starts_with("/topic?name=Form&sent="), "{location}");
    let t = text(&http_get(web, &location, "").1);
    assert!(t.contains("Sent: message id"), "{t}");
    // The index follows the append (the dispatcher): ask until it is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        match ops::query_by_key(&c, "Form", "from-the-form", 32, 0, i64::MAX).await {
            Ok(found) => break found,
            Err(e) => assert!(Instant::now() < deadline, "not found by key: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].body, b"hello <world>");
    assert_eq!(found[0].property("TAGS"), Some("console"));

    // A topic that does not exist (and may not be created): the page says why.
    let form = "topic=Nope%21&body=x";
    let (status, head, _) = http_exchange(
        web,
        format!(
            "POST /send HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    assert_eq!(status, 303);
    assert!(head.contains("failed="), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_sends_flow_during_a_page_storm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), CONSOLE);
    let c = Client::connect(broker.addr).await.expect("connect");
    known_data(&c).await;
    let web = console(&broker);

    assert_eq!(http_get(web, "/nope", "").0, 404);
    assert_eq!(http_get(web, "/topic?name=NoSuchTopic", "").0, 404);
    assert_eq!(http_get(web, "/topic", "").0, 400);
    assert_eq!(http_get(web, "/group?name=nobody", "").0, 404);
    assert_eq!(
        http_get(web, "/message?topic=Orders&queue=x&offset=1", "").0,
        400
    );
    assert_eq!(http_get(web, "/message?id=not-an-id", "").0, 400);
    assert_eq!(
        http_get(web, "/message?topic=%ZZ%%&key=%", "").0,
        200,
        "undecodable escapes are read literally"
    );
    assert_eq!(
        http_get(web, &format!("/topics?{}", "a=b&".repeat(2000)), "").0,
        414
    );
    assert_ne!(
        http_get(web, &format!("/topics?{}", "q".repeat(64 * 1024)), "").0,
        200,
        "a 64 KiB request line was served"
    );
    assert_eq!(
        http_exchange(
            web,
            b"DELETE /topics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .0,
        405
    );
    assert_eq!(http_exchange(web, b"GARBAGE\r\n\r\n").0 / 100, 4);
    let big = "x".repeat(100 * 1024);
    assert_eq!(
        http_exchange(
            web,
            format!("POST /send HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}", big.len()).as_bytes()
        )
        .0,
        413
    );
    // A slow client: half a request head, then nothing. The server closes it.
    common::assert_slow_client_dropped(web, b"GET / HTTP/1.1\r\nHost: t\r\n");

    // A storm of page loads while a producer sends: every send succeeds, none stalls.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..8)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let pages = [
                    "/",
                    "/topics",
                    "/topic?name=Orders",
                    "/group?name=billing",
                    "/message?topic=Orders&key=order-3",
                ];
                let mut served = 0u32;
                let mut n = i;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if http_get(web, pages[n % pages.len()], "").0 == 200 {
                        served += 1;
                    }
                    n += 1;
                }
                served
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for n in 0..300 {
        let t = Instant::now();
        let r = ops::send(
            &c,
            "storm",
            &Outgoing::new("Orders", n % 4, format!("storm {n}")),
        )
        .await
        .expect("send");
        latencies.push(t.elapsed());
        assert_eq!(r.code, response::SUCCESS);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served: u32 = loaders.into_iter().map(|l| l.join().expect("loader")).sum();
    latencies.sort_unstable();
    eprintln!(
        "during the page storm: {served} pages served; send p50 {:?} p99 {:?} max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );
    assert!(served > 0, "no page was served");
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(5),
        "a send stalled"
    );
    assert_eq!(http_get(web, "/", "").0, 200, "still answering");
}

#[test]
fn with_acl_the_console_needs_a_white_listed_address_or_an_admin_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("plain_acl.yml"),
        "globalWhiteRemoteAddresses:\n  - 10.9.9.9\naccounts:\n  - accessKey: ops-admin\n    secretKey: ops-secret-1\n    admin: true\n  - accessKey: app-user\n    secretKey: app-secret-1\n    admin: false\n",
    )
    .expect("acl file");
    let broker = RunningBroker::start(dir.path(), &format!("{CONSOLE}aclEnable=true\n"));
    let web = console(&broker);
    let basic = |user: &str, pass: &str| {
        use base64::Engine as _;
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let (status, head, _) = http_exchange(
        web,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{head}"
    );
    assert_eq!(
        http_get(web, "/", &basic("app-user", "app-secret-1")).0,
        401,
        "not an admin"
    );
    assert_eq!(http_get(web, "/", &basic("ops-admin", "wrong")).0, 401);
    assert_eq!(
        http_get(web, "/", &basic("ops-admin", "ops-secret-1")).0,
        200
    );
    let form = "topic=T&body=x";
    let (status, _, _) = http_exchange(
        web,
        format!("POST /send HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()).as_bytes(),
    );
    assert_eq!(status, 401, "sending needs the account too");
}
