//! SVG written by hand for the bench's charts (`charts.rs`): shapes and text
//! on a canvas, and axes with their scales and ticks. Nothing is loaded from
//! elsewhere; the text is in the reader's own sans-serif.

use std::fmt::Write as _;

/// A picture being drawn, in pixels from its top left corner.
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

/// Where a text stands from its point.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// Classes the charts draw with: text, a title, notes, axes and grid lines.
const STYLE: &str = "text{font:12px system-ui,-apple-system,'Segoe UI',Helvetica,Arial,\
                     sans-serif;fill:#333}.title{font-size:15px;font-weight:600}\
                     .note{fill:#666}.axis{stroke:#888}.grid{stroke:#e6e6e6}";

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        Svg {
            width,
            height,
            body: String::new(),
        }
    }

    /// A line of a class of `STYLE` ("axis", "grid").
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), class: &str) {
        let _ = writeln!(
            self.body,
            r#"<line class="{class}" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
            from.0, from.1, to.0, to.1
        );
    }

    /// Points joined, in `color`; `title` shows on hovering.
    pub fn polyline(&mut self, points: &[(f64, f64)], color: &str, title: &str) {
        let points: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            self.body,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(title)
        );
    }

    pub fn rect(&mut self, at: (f64, f64), size: (f64, f64), color: &str, title: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}</title></rect>"#,
            at.0,
            at.1,
            size.0.max(0.0),
            size.1.max(0.0),
            escape(title)
        );
    }

    /// A dot marking a value, ringed in white to stand out from lines.
    pub fn dot(&mut self, at: (f64, f64), color: &str, title: &str) {
        let _ = writeln!(
            self.body,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}" stroke="#fff" stroke-width="1.5"><title>{}</title></circle>"##,
            at.0,
            at.1,
            escape(title)
        );
    }

    /// `text` at `at`, of a class of `STYLE` ("title", "note") or none.
    pub fn text(&mut self, at: (f64, f64), anchor: Anchor, class: &str, text: &str) {
        let anchor = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let _ = writeln!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" class="{class}">{}</text>"#,
            at.0,
            at.1,
            escape(text)
        );
    }

    /// Text turned a quarter left, centred on `at`: a vertical axis's title.
    pub fn vertical_text(&mut self, at: (f64, f64), text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text transform="translate({:.1} {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            at.0,
            at.1,
            escape(text)
        );
    }

    /// A horizontal axis at `y` for `scale`: ticks labelled below it, grid
    /// lines up to `top`, and its title under the labels.
    pub fn x_axis(&mut self, scale: &Scale, y: f64, top: f64, title: &str) {
        for tick in scale.ticks() {
            let x = scale.at(tick);
            self.line((x, top), (x, y), "grid");
            self.line((x, y), (x, y + 4.0), "axis");
            self.text((x, y + 17.0), Anchor::Middle, "", &number(tick));
        }
        self.line((scale.from, y), (scale.to, y), "axis");
        let middle = (scale.from + scale.to) / 2.0;
        self.text((middle, y + 35.0), Anchor::Middle, "note", title);
    }

    /// A vertical axis at `x` for `scale`: ticks labelled left of it, grid
    /// lines across to `right`, and its title along it further left.
    pub fn y_axis(&mut self, scale: &Scale, x: f64, right: f64, title: &str) {
        for tick in scale.ticks() {
            let y = scale.at(tick);
            self.line((x, y), (right, y), "grid");
            self.line((x - 4.0, y), (x, y), "axis");
            self.text((x - 7.0, y + 4.0), Anchor::End, "", &number(tick));
        }
        self.line((x, scale.from), (x, scale.to), "axis");
        let middle = (scale.from + scale.to) / 2.0;
        self.vertical_text((14.0, middle), title);
    }

    /// The whole picture, as a file or to inline in a page.
    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\">\n<style>{STYLE}</style>\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n{body}</svg>\n",
            w = self.width,
            h = self.height.ceil(),
            body = self.body
        )
    }
}

/// Text as XML character data or an attribute's value.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Values onto pixels along one axis: `low` is at pixel `from`, `high` at
/// `to` (above `from` on a vertical axis), in between linearly or by
/// logarithm.
#[derive(Debug, Clone)]
pub struct Scale {
    low: f64,
    high: f64,
    pub from: f64,
    pub to: f64,
    log: bool,
}

impl Scale {
    /// From 0 to a round value at or above `max` (1 when there is nothing).
    pub fn linear(max: f64, from: f64, to: f64) -> Scale {
        let max = if max > 0.0 && max.is_finite() {
            max
        } else {
            1.0
        };
        let step = round_step(max / 5.0);
        Scale {
            low: 0.0,
            high: (max / step - 1e-9).ceil() * step,
            from,
            to,
            log: false,
        }
    }

    /// Logarithmic, from a 1, 2 or 5 times a power of ten at or below
    /// `min` to one at or above `max`, for values across magnitudes.
    pub fn log(min: f64, max: f64, from: f64, to: f64) -> Scale {
        let min = if min > 0.0 && min.is_finite() {
            min
        } else {
            1.0
        };
        let max = if max.is_finite() { max } else { min };
        let low = series_125(1e-9, min * (1.0 + 1e-9)).last().unwrap_or(min);
        let high = series_125(max.max(min), f64::INFINITY)
            .next()
            .unwrap_or(max)
            .max(low * 2.0);
        Scale {
            low,
            high,
            from,
            to,
            log: true,
        }
    }

    /// The pixel of `value`, clamped to the axis.
    pub fn at(&self, value: f64) -> f64 {
        let value = value.clamp(self.low, self.high);
        let share = match self.log {
            true => (value / self.low).ln() / (self.high / self.low).ln(),
            false => (value - self.low) / (self.high - self.low),
        };
        self.from + share * (self.to - self.from)
    }

    /// Round values to label: five or so steps of 1, 2, 2.5 or 5 times a
    /// power of ten; on a log scale 1, 2 and 5 times each power (only the
    /// powers when that is more than a dozen).
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let all: Vec<f64> = series_125(self.low, self.high * (1.0 + 1e-9)).collect();
            if all.len() <= 12 {
                return all;
            }
            let power = |value: &f64| (value.log10() - value.log10().round()).abs() < 1e-9;
            return all.into_iter().filter(power).collect();
        }
        let step = round_step(self.high / 5.0);
        let steps = (self.high / step).round() as usize;
        (0..=steps).map(|n| n as f64 * step).collect()
    }
}

/// The smallest of 1, 2, 2.5 and 5 times a power of ten that is `at_least`.
fn round_step(at_least: f64) -> f64 {
    let power = 10f64.powf(at_least.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= at_least * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// 1, 2 and 5 times the powers of ten, from `from` up to `below`.
fn series_125(from: f64, below: f64) -> impl Iterator<Item = f64> {
    let first = from.log10().floor() as i32;
    (first..=first + 40)
        .flat_map(|exponent| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(exponent)))
        .filter(move |value| *value >= from * (1.0 - 1e-9))
        .take_while(move |value| *value < below)
}

/// A tick's label: no trailing zeros, thousands apart ("0.05", "2.5",
/// "20,000").
pub fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits: Vec<char> = whole.chars().collect();
    let mut grouped = String::new();
    for (n, digit) in digits.iter().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(*digit);
    }
    match fraction {
        "" => grouped,
        fraction => format!("{grouped}.{fraction}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_reach_past_the_largest_value() {
        let ticks = |max| {
            let scale = Scale::linear(max, 0.0, 100.0);
            scale.ticks().into_iter().map(number).collect::<Vec<_>>()
        };
        assert_eq!(ticks(4.4), ["0", "1", "2", "3", "4", "5"]);
        assert_eq!(
            ticks(19_000.0),
            ["0", "5,000", "10,000", "15,000", "20,000"]
        );
        assert_eq!(ticks(0.43), ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]);
        assert_eq!(ticks(100.0), ["0", "20", "40", "60", "80", "100"]);
        assert_eq!(ticks(0.0), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    }

    #[test]
    fn a_log_scale_runs_from_one_round_value_to_another() {
        let scale = Scale::log(0.31, 38.0, 0.0, 600.0);
        assert_eq!(
            scale.ticks().iter().map(|t| number(*t)).collect::<Vec<_>>(),
            ["0.2", "0.5", "1", "2", "5", "10", "20", "50"]
        );
        assert_eq!(scale.at(0.2), 0.0);
        assert_eq!(scale.at(50.0), 600.0);
        assert!((scale.at(10.0) - 600.0 * (50f64).ln() / (250f64).ln()).abs() < 1e-9);
        // Below and above the axis: at its ends.
        assert_eq!((scale.at(0.01), scale.at(1e6)), (0.0, 600.0));
        let wide = Scale::log(0.05, 1500.0, 0.0, 600.0).ticks();
        assert_eq!(wide, [0.1, 1.0, 10.0, 100.0, 1000.0]);
        // A round value is its own end; nothing to show is 1 to 2.
        assert_eq!(
            Scale::log(1.0, 10.0, 0.0, 1.0).ticks(),
            [1.0, 2.0, 5.0, 10.0]
        );
        let nothing = Scale::log(f64::INFINITY, 0.0, 0.0, 1.0);
        assert_eq!(nothing.ticks(), [1.0, 2.0]);
    }

    #[test]
    fn vertical_scales_run_upwards() {
        let scale = Scale::linear(100.0, 250.0, 50.0);
        assert_eq!(
            (scale.at(0.0), scale.at(100.0), scale.at(50.0)),
            (250.0, 50.0, 150.0)
        );
    }

    #[test]
    fn labels_have_no_trailing_zeros_and_group_thousands() {
        let labels = [0.05, 2.5, 20.0, 1000.0, 20_000.0, 1_250_000.0].map(number);
        assert_eq!(
            labels,
            ["0.05", "2.5", "20", "1,000", "20,000", "1,250,000"]
        );
    }

    #[test]
    fn text_is_escaped_and_the_picture_is_one_svg_element() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        let mut svg = Svg::new(100.0, 50.0);
        svg.text((1.0, 2.0), Anchor::Start, "title", "</svg>");
        let svg = svg.finish();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("</svg>").count(), 1, "{svg}");
    }
}
