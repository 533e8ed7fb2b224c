//! The console in a real browser: headless Chromium (Debian's `chromium`; `CHROMIUM` names
//! another binary) loads each page of a broker holding known data, the rendered document is
//! checked, and a screenshot of each page is saved (`CONSOLE_SCREENSHOTS`, default
//! `<target>/tmp/console-screenshots`; README's come from here). Ignored by a plain
//! `cargo test` (it needs Chromium and takes ~35 s); `.ci/run` installs Chromium and runs
//! it with `--ignored`. Without Chromium it fails: it never passes without having looked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::Client;
use common::RunningBroker;

fn chromium() -> String {
    if let Ok(c) = std::env::var("CHROMIUM") {
        return c;
    }
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {candidate}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return candidate.to_owned();
        }
    }
    panic!("no Chromium found: `apt-get install chromium` (or set CHROMIUM)");
}

fn headless(browser: &str) -> Command {
    let mut c = Command::new(browser);
    // Root in a container has no user namespace for the sandbox; the pages are our own.
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--window-size=1280,900",
    ]);
    c
}

/// Runs headless Chromium with `args` then `url`; its standard output.
fn run_chromium(browser: &str, args: &[String], url: &str) -> String {
    let out = headless(browser)
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The document Chromium rendered from `url`.
fn rendered(browser: &str, url: &str) -> String {
    run_chromium(browser, &["--dump-dom".to_owned()], url)
}

fn screenshot(browser: &str, url: &str, file: &Path) {
    run_chromium(browser, &[format!("--screenshot={}", file.display())], url);
    let len = std::fs::metadata(file).map_or(0, |m| m.len());
    assert!(
        len > 10_000,
        "{} is {len} bytes: not a rendered page",
        file.display()
    );
}

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("CONSOLE_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn every_page_renders_in_chromium_with_the_brokers_data() {
    let browser = chromium();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(
        dir.path(),
        "consolePort=0\nbrokerName=broker-a\nbrokerClusterName=DemoCluster\n",
    );
    let c = Client::connect(broker.addr).await.expect("connect");
    ops::create_topic(&c, "Orders", 4).await.expect("topic");
    ops::create_topic(&c, "Payments", 2).await.expect("topic");
    // Three rounds 12 s apart (the progress samples every 10 s): the group falls behind,
    // so its lag chart has a line to draw.
    let mut sent = 0;
    for round in 0..3 {
        for i in 0..40 {
            let mut m = Outgoing::new(
                "Orders",
                i % 4,
                format!("{{\"order\": {sent}, \"total\": {}.99}}", sent % 50),
            );
            m.keys = Some(format!("order-{sent}"));
            m.tags = Some("created".into());
            ops::send(&c, "shop", &m).await.expect("send");
            sent += 1;
        }
        let mut p = Outgoing::new(
            "Payments",
            round % 2,
            vec![0x01, 0x02, 0xfe, 0xff, b'p', b'a', b'y'],
        );
        p.keys = Some(format!("pay-{round}"));
        ops::send(&c, "shop", &p).await.expect("send");
        for q in 0..4u32 {
            ops::commit(&c, "billing", "Orders", q, 3 * (round as u64 + 1))
                .await
                .expect("commit");
        }
        if round < 2 {
            tokio::time::sleep(Duration::from_secs(12)).await;
        }
    }
    let web = broker.console.expect("console address");
    let base = format!("http://{web}");
    // The pages and what each must show once rendered.
    let pages: [(&str, String, &[&str]); 5] = [
        (
            "overview",
            format!("{base}/"),
            &[
                "Broker broker-a",
                "DemoCluster",
                "Disk and flush",
                "Flushed up to",
            ],
        ),
        (
            "topics",
            format!("{base}/topics"),
            &["Orders", "Payments", "4 / 4"],
        ),
        (
            "topic",
            format!("{base}/topic?name=Orders"),
            &["Topic Orders", "Send a test message", "billing"],
        ),
        (
            "group",
            format!("{base}/group?name=billing"),
            // The chart's parts are siblings in the SVG (a bare <line> would swallow them).
            &[
                "Consumer group billing",
                "Lag",
                "<polyline",
                "</polyline></svg>",
            ],
        ),
        (
            "message",
            format!("{base}/message?topic=Orders&key=order-7"),
            &["1 message(s)", "order-7", "created"],
        ),
    ];
    // The chart needs two samples of the group: wait for them (generously) before looking.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::http_get(web, "/group?name=billing", "")
        .1
        .contains("<polyline")
    {
        assert!(Instant::now() < deadline, "no lag chart after 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shots = screenshots_dir();
    for (name, url, expect) in &pages {
        let dom = rendered(&browser, url);
        for e in *expect {
            assert!(
                dom.contains(e),
                "{name}: `{e}` not in the rendered page:\n{dom}"
            );
        }
        screenshot(&browser, url, &shots.join(format!("{name}.png")));
    }
    eprintln!("console screenshots in {}", shots.display());
}
