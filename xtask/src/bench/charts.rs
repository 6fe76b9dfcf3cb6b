//! The bench's figures as pictures. `--report DIR` writes the run's figures
//! (`figures.json`, as `--json` does), four SVG charts (latency, memory per
//! connection, CPU per delivery, clients connected over time) and a page
//! showing them with a table of the figures (`index.html`); `--compare`
//! draws the runs of files written earlier onto the same charts, without
//! running anything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::report::{Connecting, Latency, Percentiles, Record};
use super::svg::{Anchor, Scale, Svg, escape};
use crate::servers::DEMOS;

/// What the charts read of a file of figures (`Record`). Files written
/// before the bench kept the latencies' distribution and the clients
/// connected over time lack those: their runs are drawn without them.
#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    command: String,
    unix_time: u64,
    cores: usize,
    memory_bytes: u64,
    runs: Vec<Run>,
}

#[derive(Debug, Deserialize)]
struct Run {
    server: String,
    setup: String,
    tls: bool,
    pinned: bool,
    clients: usize,
    messages: usize,
    rate: f64,
    connect_seconds: f64,
    bytes_per_connection: f64,
    deliveries_per_second: f64,
    server_cpu_us_per_delivery: f64,
    latency_ms: Latency,
    lost: u64,
    #[serde(default)]
    latency_percentiles: Percentiles,
    #[serde(default)]
    connecting: Connecting,
}

/// A run on the charts, by its name and colour.
struct Series<'a> {
    label: String,
    color: &'static str,
    run: &'a Run,
}

/// Okabe and Ito's colours, told apart by colour-blind readers too.
const COLORS: [&str; 7] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

const WIDTH: f64 = 680.0;
/// Where a chart's plot begins, below its title.
const TOP: f64 = 58.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = WIDTH - 24.0;
const PLOT_HEIGHT: f64 = 240.0;
/// Each line of a legend.
const LINE: f64 = 18.0;

/// Writes `record` to `dir/figures.json`, then draws it there.
pub fn report(dir: &Path, record: &Record) -> Result<()> {
    let json = serde_json::to_string_pretty(record).context("cannot write the figures")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("figures.json");
    std::fs::write(&path, json.clone() + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Drawn from what the file says, as --compare draws it.
    let file = serde_json::from_str(&json).context("cannot read back the figures")?;
    draw(dir, &[(None, file)])
}

/// Draws the runs of the files at `paths` into `dir`.
pub fn compare(paths: &[PathBuf], dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: File = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a file of bench --json or --report",
                path.display()
            )
        })?;
        files.push((Some(name(path)), file));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    draw(dir, &files)
}

/// A file's name on the charts: its own, or its folder's for a `--report`
/// folder's `figures.json`.
fn name(path: &Path) -> String {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .map(|folder| folder.to_string_lossy());
    match (stem.as_ref(), folder) {
        ("figures", Some(folder)) => folder.into_owned(),
        _ => stem.into_owned(),
    }
}

/// The charts of every run of `files` (named by their file, when it has a
/// name), and the page.
fn draw(dir: &Path, files: &[(Option<String>, File)]) -> Result<()> {
    let (series, conditions) = series(files);
    let charts = [
        ("latency.svg", latency(&series, &conditions)),
        ("connect.svg", connecting(&series, &conditions)),
        ("memory.svg", bars(&series, &conditions, &MEMORY)),
        ("cpu.svg", bars(&series, &conditions, &CPU)),
    ];
    for (name, svg) in &charts {
        let path = dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let path = dir.join("index.html");
    std::fs::write(&path, page(files, &series, &charts))
        .with_context(|| format!("cannot write {}", path.display()))?;
    say!("report written to {}", path.display());
    Ok(())
}

/// Every run, those of one server together (each file's in order), so
/// that a before and an after stand side by side; and what every run was
/// asked to do, when that is the same for all (else each label says it).
fn series<'a>(files: &'a [(Option<String>, File)]) -> (Vec<Series<'a>>, String) {
    let demo = |run: &Run| DEMOS.iter().position(|demo| demo.package == run.server);
    let mut runs: Vec<(Option<&str>, &Run)> = files
        .iter()
        .flat_map(|(name, file)| file.runs.iter().map(move |run| (name.as_deref(), run)))
        .collect();
    runs.sort_by_key(|(_, run)| demo(run).unwrap_or(DEMOS.len()));
    let first = runs.first().map(|(_, run)| conditions(run));
    let differ = runs.iter().any(|(_, run)| Some(conditions(run)) != first);
    let series = runs
        .into_iter()
        .enumerate()
        .map(|(n, (file, run))| {
            let mut label = file.map(|name| format!("{name} · ")).unwrap_or_default();
            label += demo(run).map_or(run.server.as_str(), |n| DEMOS[n].name);
            if run.setup != "alone" {
                let _ = write!(label, ", {}", run.setup);
            }
            if run.tls {
                label += " over TLS";
            }
            if differ {
                let _ = write!(label, " ({})", conditions(run));
            }
            Series {
                label,
                color: COLORS[n % COLORS.len()],
                run,
            }
        })
        .collect();
    let shared = match differ {
        true => String::new(),
        false => first.unwrap_or_default(),
    };
    (series, shared)
}

/// What a run was asked to do.
fn conditions(run: &Run) -> String {
    format!(
        "{} clients, {} messages at {}/s{}",
        run.clients,
        run.messages,
        run.rate,
        if run.pinned { ", pinned" } else { "" }
    )
}

/// A chart's canvas, title and subtitle, for a plot of `height` and a
/// legend of `legend` lines below it.
fn canvas(title: &str, subtitle: &str, height: f64, legend: usize) -> Svg {
    let mut svg = Svg::new(WIDTH, TOP + height + 52.0 + LINE * legend as f64);
    svg.text((12.0, 22.0), Anchor::Start, "title", title);
    svg.text((12.0, 40.0), Anchor::Start, "note", subtitle);
    svg
}

/// The legend under a plot of `height`: a swatch of each series' colour and
/// its text.
fn legend(svg: &mut Svg, height: f64, lines: &[(&str, String)]) {
    let mut y = TOP + height + 56.0;
    for (color, text) in lines {
        svg.rect((LEFT, y - 9.0), (16.0, 10.0), color, "");
        svg.text((LEFT + 22.0, y), Anchor::Start, "", text);
        y += LINE;
    }
}

/// A note in the middle of an empty plot.
fn nothing(svg: &mut Svg, why: &str) {
    let at = ((LEFT + RIGHT) / 2.0, TOP + PLOT_HEIGHT / 2.0);
    svg.text(at, Anchor::Middle, "note", why);
}

/// The share of the deliveries that arrived within each latency: one curve
/// a run, on a log scale (runs differ by magnitudes), the p50, p90 and p99
/// the report prints marked on it and written in the legend.
fn latency(series: &[Series], conditions: &str) -> String {
    let kept = |s: &&Series| s.run.latency_percentiles.ms.iter().any(|ms| *ms > 0.0);
    let mut svg = canvas(
        "Latency from send to receipt, every delivery",
        conditions,
        PLOT_HEIGHT,
        series.len(),
    );
    let bottom = TOP + PLOT_HEIGHT;
    let curves = || {
        series
            .iter()
            .filter(kept)
            .map(|s| &s.run.latency_percentiles.ms)
    };
    let fastest = curves()
        .filter_map(|ms| ms.first())
        .fold(f64::INFINITY, |a, b| a.min(*b));
    let slowest = curves()
        .filter_map(|ms| ms.last())
        .fold(0.0, |a: f64, b| a.max(*b));
    // Below 10 µs is below what the clocks of two processes tell apart.
    let x = Scale::log(fastest.max(0.01), slowest, LEFT, RIGHT);
    let y = Scale::linear(100.0, bottom, TOP);
    svg.y_axis(&y, LEFT, RIGHT, "% of deliveries within");
    svg.x_axis(&x, bottom, TOP, "milliseconds (log scale)");
    if curves().next().is_none() {
        nothing(&mut svg, "no latency distribution in these figures");
    }
    let mut lines = Vec::new();
    for s in series {
        if !kept(&s) {
            lines.push((s.color, format!("{}: no distribution kept", s.label)));
            continue;
        }
        let curve = &s.run.latency_percentiles;
        let points: Vec<(f64, f64)> = curve
            .percent
            .iter()
            .zip(&curve.ms)
            .map(|(percent, ms)| (x.at(*ms), y.at(*percent)))
            .collect();
        svg.polyline(&points, s.color, &s.label);
        let Latency { p50, p90, p99, max } = s.run.latency_ms;
        for (percent, ms) in [(50, p50), (90, p90), (99, p99)] {
            let title = format!("{}: p{percent} {ms:.2} ms", s.label);
            svg.dot((x.at(ms), y.at(f64::from(percent))), s.color, &title);
        }
        let text = format!(
            "{}: p50 {p50:.2} · p90 {p90:.2} · p99 {p99:.2} · max {max:.2} ms",
            s.label
        );
        lines.push((s.color, text));
    }
    legend(&mut svg, PLOT_HEIGHT, &lines);
    svg.finish()
}

/// Clients connected while they connected, from when the client processes
/// started.
fn connecting(series: &[Series], conditions: &str) -> String {
    let mut svg = canvas(
        "Clients connected while connecting",
        conditions,
        PLOT_HEIGHT,
        series.len(),
    );
    let bottom = TOP + PLOT_HEIGHT;
    let seconds = |run: &Run| {
        let sampled = run.connecting.connected.len().saturating_sub(1) as u64;
        (sampled * run.connecting.step_ms) as f64 / 1000.0
    };
    let longest = series
        .iter()
        .map(|s| seconds(s.run).max(s.run.connect_seconds))
        .fold(0.0, f64::max);
    let most = series.iter().map(|s| s.run.clients).max().unwrap_or(0);
    let x = Scale::linear(longest, LEFT, RIGHT);
    let y = Scale::linear(most as f64, bottom, TOP);
    svg.y_axis(&y, LEFT, RIGHT, "clients connected");
    svg.x_axis(
        &x,
        bottom,
        TOP,
        "seconds since the client processes started",
    );
    let mut lines = Vec::new();
    for s in series {
        let run = s.run;
        let timeline = &run.connecting;
        if timeline.connected.is_empty() {
            lines.push((s.color, format!("{}: no timeline kept", s.label)));
            continue;
        }
        let points: Vec<(f64, f64)> = timeline
            .connected
            .iter()
            .enumerate()
            .map(|(n, count)| {
                let at = (n as u64 * timeline.step_ms) as f64 / 1000.0;
                (x.at(at), y.at(*count as f64))
            })
            .collect();
        svg.polyline(&points, s.color, &s.label);
        let text = format!(
            "{}: {} clients in {:.2} s",
            s.label, run.clients, run.connect_seconds
        );
        lines.push((s.color, text));
    }
    if series.iter().all(|s| s.run.connecting.connected.is_empty()) {
        nothing(&mut svg, "no timeline of connecting in these figures");
    }
    legend(&mut svg, PLOT_HEIGHT, &lines);
    svg.finish()
}

/// A figure drawn as one bar a run.
struct Bars {
    title: &'static str,
    axis: &'static str,
    value: fn(&Run) -> f64,
    /// The value as the report prints it, unit included.
    label: fn(f64) -> String,
}

const MEMORY: Bars = Bars {
    title: "Server memory per connection",
    axis: "KiB: the servers' resident memory with every client, less before, per client",
    value: |run| run.bytes_per_connection / 1024.0,
    label: |kib| format!("{kib:.1} KiB"),
};

const CPU: Bars = Bars {
    title: "Server CPU time per delivery",
    axis: "µs: the servers' CPU time from the first send to the last receipt, per delivery",
    value: |run| run.server_cpu_us_per_delivery,
    label: |us| format!("{us:.2} µs"),
};

/// One bar a run, its label above it and its value at its end.
fn bars(series: &[Series], conditions: &str, bars: &Bars) -> String {
    const ROW: f64 = 38.0;
    let height = ROW * series.len().max(1) as f64;
    let mut svg = canvas(bars.title, conditions, height, 0);
    let (left, right) = (16.0, WIDTH - 96.0);
    let most = series
        .iter()
        .map(|s| (bars.value)(s.run))
        .fold(0.0, f64::max);
    let x = Scale::linear(most, left, right);
    svg.x_axis(&x, TOP + height, TOP, bars.axis);
    for (n, s) in series.iter().enumerate() {
        let top = TOP + ROW * n as f64;
        let value = (bars.value)(s.run);
        svg.text((left, top + 13.0), Anchor::Start, "", &s.label);
        let end = x.at(value);
        let label = (bars.label)(value);
        svg.rect((left, top + 18.0), (end - left, 14.0), s.color, &label);
        svg.text((end + 6.0, top + 30.0), Anchor::Start, "", &label);
    }
    svg.finish()
}

/// The page: where the figures come from, a table of them, and the charts.
fn page(files: &[(Option<String>, File)], series: &[Series], charts: &[(&str, String)]) -> String {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>cargo xtask bench</title>\n<style>\n\
         body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
         color:#222;max-width:720px;margin:24px auto;padding:0 12px}\n\
         table{border-collapse:collapse;font-size:13px;margin:12px 0 24px}\n\
         th,td{padding:3px 6px;border-bottom:1px solid #ddd;text-align:right}\n\
         th:first-child,td:first-child{text-align:left;white-space:nowrap}\n\
         .swatch{display:inline-block;width:10px;height:10px;margin-right:6px}\n\
         svg{max-width:100%;height:auto;display:block;margin:16px 0}\n\
         code{font-size:13px;background:#f4f4f4;padding:1px 4px}\n</style>\n</head>\n<body>\n\
         <h1>Benchmark</h1>\n",
    );
    for (name, file) in files {
        let name = name
            .as_ref()
            .map(|name| format!("<b>{}</b>: ", escape(name)))
            .unwrap_or_default();
        let command = match file.command.as_str() {
            "" => "(the command is not in the file)".to_owned(),
            command => format!("<code>{}</code>", escape(command)),
        };
        let _ = writeln!(
            html,
            "<p>{name}{command}<br>{}, on {} cores with {:.1} GiB of memory</p>",
            date(file.unix_time),
            file.cores,
            file.memory_bytes as f64 / 1073741824.0
        );
    }
    html += "<table>\n<tr><th>run</th><th>clients</th><th>connected in</th>\
             <th>memory a connection</th><th>CPU a delivery</th><th>deliveries a second</th>\
             <th>latency p50 / p99 / max</th><th>lost</th></tr>\n";
    for s in series {
        let run = s.run;
        let Latency { p50, p99, max, .. } = run.latency_ms;
        let _ = writeln!(
            html,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td>\
             <td>{:.2} s</td><td>{}</td><td>{}</td><td>{:.0}</td>\
             <td>{p50:.2} / {p99:.2} / {max:.2} ms</td><td>{}</td></tr>",
            s.color,
            escape(&s.label),
            run.clients,
            run.connect_seconds,
            (MEMORY.label)((MEMORY.value)(run)),
            (CPU.label)((CPU.value)(run)),
            run.deliveries_per_second,
            run.lost
        );
    }
    html += "</table>\n";
    for (_, svg) in charts {
        html += svg;
    }
    html += "</body>\n</html>\n";
    html
}

/// A Unix time as a date and time, UTC (days to a civil date: Howard
/// Hinnant's algorithm).
fn date(unix: u64) -> String {
    let (days, seconds) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02} UTC",
        seconds / 3600,
        seconds % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A run as a file of figures holds it, with `changes` made.
    fn run(server: &str, p99: f64, changes: Value) -> Value {
        let mut run = json!({
            "server": server, "setup": "alone", "tls": false, "pinned": true,
            "clients": 2000, "messages": 100, "rate": 20.0, "connect_seconds": 0.31,
            "bytes_per_connection": 4505.0, "deliveries_per_second": 40_000.0,
            "server_cpu_us_per_delivery": 0.43,
            "latency_ms": {"p50": 3.8, "p90": 6.1, "p99": p99, "max": 12.0},
            "lost": 0,
            "latency_percentiles": {
                "percent": [0.0, 50.0, 90.0, 99.0, 100.0],
                "ms": [0.4, 3.8, 6.1, p99, 12.0]
            },
            "connecting": {"step_ms": 5, "connected": [0, 700, 1900, 2000]},
        });
        for (field, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => run.as_object_mut().unwrap().remove(field),
                value => run
                    .as_object_mut()
                    .unwrap()
                    .insert(field.clone(), value.clone()),
            };
        }
        run
    }

    fn file(runs: Vec<Value>) -> File {
        serde_json::from_value(json!({
            "command": "cargo xtask bench --pin --clients 2000",
            "unix_time": 1_796_400_000u64, "cores": 2, "memory_bytes": 25_000_000_000u64,
            "runs": runs,
        }))
        .unwrap()
    }

    /// The charts and the page of `files`.
    fn drawn(files: &[(Option<String>, File)]) -> ([(&'static str, String); 4], String) {
        let (series, conditions) = series(files);
        let charts = [
            ("latency", latency(&series, &conditions)),
            ("connect", connecting(&series, &conditions)),
            ("memory", bars(&series, &conditions, &MEMORY)),
            ("cpu", bars(&series, &conditions, &CPU)),
        ];
        let page = page(files, &series, &charts);
        (charts, page)
    }

    /// Every text and title of an SVG, read as XML: it must be one.
    fn texts(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).expect("well-formed XML");
        let root = document.root_element();
        assert_eq!(
            (root.tag_name().name(), root.tag_name().namespace()),
            ("svg", Some("http://www.w3.org/2000/svg"))
        );
        document
            .descendants()
            .filter(|node| ["text", "title"].contains(&node.tag_name().name()))
            .filter_map(|node| node.text())
            .map(str::to_owned)
            .collect()
    }

    fn count(svg: &str, element: &str) -> usize {
        let document = roxmltree::Document::parse(svg).unwrap();
        let named = |node: &roxmltree::Node| node.tag_name().name() == element;
        document.descendants().filter(named).count()
    }

    #[test]
    fn a_run_is_drawn_with_its_own_numbers() {
        let files = [(
            None,
            file(vec![
                run("websocket-demo", 8.7, json!({})),
                run(
                    "server-sent-events-demo",
                    9.61,
                    json!({"bytes_per_connection": 5734.0}),
                ),
            ]),
        )];
        let (charts, page) = drawn(&files);
        let [latency, connect, memory, cpu] = charts.clone().map(|(_, svg)| texts(&svg));
        let has = |texts: &[String], wanted: &str| texts.iter().any(|t| t.contains(wanted));
        assert!(has(
            &latency,
            "WebSocket: p50 3.80 · p90 6.10 · p99 8.70 · max 12.00 ms"
        ));
        assert!(has(
            &latency,
            "SSE: p50 3.80 · p90 6.10 · p99 9.61 · max 12.00 ms"
        ));
        assert!(
            has(&latency, "SSE: p99 9.61 ms"),
            "the p99 dot: {latency:?}"
        );
        assert!(has(&latency, "2000 clients, 100 messages at 20/s, pinned"));
        assert!(has(&connect, "WebSocket: 2000 clients in 0.31 s"));
        assert!(has(&memory, "4.4 KiB") && has(&memory, "5.6 KiB"));
        assert!(has(&cpu, "0.43 µs"));
        assert_eq!(count(&charts[0].1, "polyline"), 2);
        assert_eq!(count(&charts[0].1, "circle"), 6);
        assert!(page.contains("<code>cargo xtask bench --pin --clients 2000</code>"));
        assert!(page.contains("2026-12-04 16:00 UTC, on 2 cores"));
        assert_eq!(page.matches("<svg ").count(), 4);
    }

    #[test]
    fn compared_files_are_named_and_one_servers_runs_stand_together() {
        let before = file(vec![
            run("websocket-demo", 8.7, json!({})),
            run("server-sent-events-demo", 9.6, json!({})),
        ]);
        let after = file(vec![
            run("websocket-demo", 7.5, json!({"tls": true})),
            run("server-sent-events-demo", 9.0, json!({"clients": 1000})),
        ]);
        let files = [
            (Some("before".to_owned()), before),
            (Some("after".to_owned()), after),
        ];
        let labels: Vec<String> = series(&files).0.into_iter().map(|s| s.label).collect();
        let at = " (2000 clients, 100 messages at 20/s, pinned)";
        assert_eq!(
            labels,
            [
                format!("before · WebSocket{at}"),
                format!("after · WebSocket over TLS{at}"),
                format!("before · SSE{at}"),
                "after · SSE (1000 clients, 100 messages at 20/s, pinned)".to_owned(),
            ]
        );
        let (charts, _) = drawn(&files);
        assert_eq!(count(&charts[0].1, "polyline"), 4);
        assert!(
            texts(&charts[0].1)
                .iter()
                .any(|t| t.contains("after · WebSocket over TLS"))
        );
    }

    #[test]
    fn files_from_before_the_charts_are_drawn_without_what_they_lack() {
        let old = run(
            "websocket-demo",
            8.7,
            json!({"latency_percentiles": null, "connecting": null, "setup": "<&> \"x\""}),
        );
        let mut file = file(vec![old]);
        file.command.clear();
        let files = [(Some("old".to_owned()), file)];
        let (charts, page) = drawn(&files);
        let latency = texts(&charts[0].1);
        assert!(latency.contains(&"old · WebSocket, <&> \"x\": no distribution kept".to_owned()));
        assert!(latency.contains(&"no latency distribution in these figures".to_owned()));
        assert!(
            texts(&charts[1].1)
                .iter()
                .any(|t| t.ends_with("no timeline kept"))
        );
        assert_eq!(count(&charts[0].1, "polyline"), 0);
        assert!(page.contains("(the command is not in the file)"));
        assert!(page.contains("WebSocket, &lt;&amp;&gt; &quot;x&quot;"));
    }

    #[test]
    fn a_file_is_named_by_itself_or_by_its_report_folder() {
        assert_eq!(name(Path::new("runs/before.json")), "before");
        assert_eq!(name(Path::new("target/plain/figures.json")), "plain");
        assert_eq!(name(Path::new("figures.json")), "figures");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(date(1_796_400_000 + 3599), "2026-12-04 16:59 UTC");
    }
}
