//! `cargo xtask bench --report`, run as a user would on a few clients: its
//! charts are SVG (read back as XML) carrying the numbers the bench printed,
//! and `--compare` draws two files' runs on one chart.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The bench builds the servers and itself in release mode first: minutes
/// on two cores when nothing is built yet, a moment after.
const PATIENCE: Duration = Duration::from_secs(30 * 60);

/// Runs `xtask bench` with `args` until it exits: what it printed.
fn bench(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xtask starts");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let errors = std::thread::spawn(move || stderr.read_to_string(&mut err).map(|_| err));
        let _ = stdout.read_to_string(&mut out);
        let _ = done.send((out, errors.join().ok().and_then(Result::ok)));
    });
    let Ok((out, err)) = output.recv_timeout(PATIENCE) else {
        // Ctrl-C's way out: the bench stops its servers and clients.
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = child.wait();
        panic!("xtask bench {args:?} did not finish within {PATIENCE:?}");
    };
    let status = child.wait().expect("xtask exits");
    let err = err.unwrap_or_default();
    assert!(
        status.success(),
        "xtask bench {args:?}: {status}\n{out}\n{err}"
    );
    out
}

/// A folder of this test's own, empty.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-report-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The texts and titles of an SVG file, which must be one.
fn texts(path: &Path) -> Vec<String> {
    elements(path, &["text", "title"])
}

/// What the elements of these names in an SVG file say.
fn elements(path: &Path, names: &[&str]) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap();
    let document = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|error| panic!("{} is not XML: {error}", path.display()));
    let root = document.root_element();
    assert_eq!(
        (root.tag_name().name(), root.tag_name().namespace()),
        ("svg", Some("http://www.w3.org/2000/svg")),
        "{}",
        path.display()
    );
    assert!(root.attribute("viewBox").is_some(), "{}", path.display());
    document
        .descendants()
        .filter(|node| names.contains(&node.tag_name().name()))
        .filter_map(|node| node.text())
        .map(str::to_owned)
        .collect()
}

/// The number in each printed line after `before` and up to `after`.
fn printed(report: &str, before: &str, after: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|line| line.split_once(before))
        .filter_map(|(_, rest)| rest.split_once(after))
        .map(|(number, _)| number.to_owned())
        .collect()
}

/// The numbers of the texts ending with `unit` (as in "4.4 KiB").
fn drawn(texts: &[String], unit: &str) -> Vec<f64> {
    texts
        .iter()
        .filter_map(|text| text.strip_suffix(unit)?.parse().ok())
        .collect()
}

fn near(printed: &[String], drawn: &[f64], within: f64) -> bool {
    printed.len() == drawn.len()
        && printed
            .iter()
            .zip(drawn)
            .all(|(printed, drawn)| (printed.parse::<f64>().unwrap() - drawn).abs() <= within)
}

#[test]
fn the_report_draws_the_numbers_the_bench_printed_and_compare_draws_two_files() {
    let dir = scratch("run");
    let report = bench(&[
        "--clients",
        "40",
        "--messages",
        "10",
        "--rate",
        "50",
        "--report",
        dir.to_str().unwrap(),
    ]);

    // Both servers' p99, exactly as printed, in the legend and a dot's title.
    let p99s = printed(&report, ", p99 ", " ms, max");
    assert_eq!(p99s.len(), 2, "{report}");
    let latency = texts(&dir.join("latency.svg"));
    for (server, p99) in ["WebSocket", "SSE"].iter().zip(&p99s) {
        let legend = format!("{server}: p50 ");
        assert!(
            latency
                .iter()
                .any(|text| text.starts_with(&legend) && text.contains(&format!("· p99 {p99} ·"))),
            "{p99} in {latency:#?}"
        );
        let dot = format!("{server}: p99 {p99} ms");
        assert!(latency.contains(&dot), "{dot} in {latency:#?}");
    }
    // The figures drawn are those printed, to the rounding of the file.
    // (Each bar's value is written beside it, and in its title.)
    let memory = elements(&dir.join("memory.svg"), &["text"]);
    let kib = printed(&report, "with every client: ", " KiB per connection");
    assert!(
        near(&kib, &drawn(&memory, " KiB"), 0.1),
        "{kib:?} {memory:#?}"
    );
    let cpu = elements(&dir.join("cpu.svg"), &["text"]);
    let us = printed(&report, "delivering (", " µs a delivery)");
    assert!(near(&us, &drawn(&cpu, " µs"), 0.01), "{us:?} {cpu:#?}");
    let connect = texts(&dir.join("connect.svg"));
    let seconds = printed(&report, "40 clients connected in ", " s (");
    let legends: Vec<f64> = connect
        .iter()
        .filter_map(|text| {
            text.split_once(": 40 clients in ")?
                .1
                .strip_suffix(" s")?
                .parse()
                .ok()
        })
        .collect();
    assert!(near(&seconds, &legends, 0.01), "{seconds:?} {connect:#?}");
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.contains("<code>cargo xtask bench --clients 40 --messages 10 --rate 50 --report"));
    assert_eq!(page.matches("<svg ").count(), 4);

    // The same file twice, as a before and an after: four curves, named.
    let compared = scratch("compare");
    for name in ["before.json", "after.json"] {
        std::fs::copy(dir.join("figures.json"), compared.join(name)).unwrap();
    }
    let charts = compared.join("charts");
    let said = bench(&[
        "--compare",
        compared.join("before.json").to_str().unwrap(),
        compared.join("after.json").to_str().unwrap(),
        "--report",
        charts.to_str().unwrap(),
    ]);
    assert!(said.starts_with("report written to "), "{said}");
    let latency = texts(&charts.join("latency.svg"));
    let curves: Vec<&String> = latency
        .iter()
        .filter(|text| !text.contains(": p") && text.contains(" · "))
        .collect();
    assert_eq!(
        curves,
        [
            "before · WebSocket",
            "after · WebSocket",
            "before · SSE",
            "after · SSE"
        ],
        "{latency:#?}"
    );
    assert!(latency.contains(&format!("after · SSE: p99 {} ms", p99s[1])));
}
