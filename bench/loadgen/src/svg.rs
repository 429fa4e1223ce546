//! A minimal SVG bar-chart writer (no plotting dependencies).

use std::fmt::Write;

/// One bar: value and optional (low, high) whisker.
pub type Bar = Option<(f64, Option<(f64, f64)>)>;

pub struct Series {
    pub name: String,
    pub color: String,
    /// One entry per category.
    pub bars: Vec<Bar>,
}

pub struct Panel {
    pub title: String,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
    /// Per-category bar colours for single-series panels (else series colour).
    pub category_colors: Option<Vec<String>>,
    pub value_format: fn(f64) -> String,
    /// Lower end of the value axis (default 0).
    pub ymin: Option<f64>,
    /// Horizontal reference lines: value, label.
    pub refs: Vec<(f64, String)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn panel(out: &mut String, p: &Panel, x0: f64, y0: f64, w: f64, h: f64) {
    let left = 58.0;
    let right = 10.0;
    let top = 28.0;
    let bottom = 78.0;
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max = p
        .series
        .iter()
        .flat_map(|s| s.bars.iter())
        .filter_map(|b| b.map(|(v, wh)| wh.map(|(_, hi)| hi.max(v)).unwrap_or(v)))
        .fold(0.0f64, f64::max);
    let ymin = p.ymin.unwrap_or(0.0);
    let ymax = if ymin > 0.0 {
        // Ticks every 0.05 (or a multiple of it).
        let step = (((max.max(ymin) * 1.04 - ymin) / 4.0) / 0.05)
            .ceil()
            .max(1.0)
            * 0.05;
        ymin + 4.0 * step
    } else {
        nice_max(max * 1.08)
    };
    let span = (ymax - ymin).max(1e-9);
    let ypos = |v: f64| y0 + top + ph - ph * ((v - ymin) / span).clamp(0.0, 1.0);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
        x0 + 8.0,
        y0 + 17.0,
        esc(&p.title)
    );
    // Grid and axis labels.
    for i in 0..=4 {
        let v = ymin + span * i as f64 / 4.0;
        let y = y0 + top + ph - ph * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            x0 + left,
            x0 + left + pw
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#444">{}</text>"##,
            x0 + left - 4.0,
            y + 3.5,
            esc(&(p.value_format)(v))
        );
    }
    let n = p.categories.len().max(1) as f64;
    let group = pw / n;
    let ns = p.series.len().max(1) as f64;
    let bw = (group * 0.8 / ns).min(40.0);
    for (ci, cat) in p.categories.iter().enumerate() {
        let gx = x0 + left + group * ci as f64 + (group - bw * ns) / 2.0;
        for (si, s) in p.series.iter().enumerate() {
            let Some(Some((v, whisker))) = s.bars.get(ci) else {
                continue;
            };
            let color = match (&p.category_colors, p.series.len()) {
                (Some(cc), 1) => cc.get(ci).cloned().unwrap_or_else(|| s.color.clone()),
                _ => s.color.clone(),
            };
            let y = ypos(*v);
            let bh = y0 + top + ph - y;
            let x = gx + bw * si as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
                (bw - 1.0).max(1.0),
                esc(&format!("{cat} {}", s.name)),
                esc(&(p.value_format)(*v))
            );
            if let Some((lo, hi)) = whisker {
                let cx = x + bw / 2.0;
                let ylo = ypos(*lo);
                let yhi = ypos(*hi);
                let _ = writeln!(
                    out,
                    r##"<line x1="{cx:.1}" y1="{ylo:.1}" x2="{cx:.1}" y2="{yhi:.1}" stroke="#222" stroke-width="1"/><line x1="{:.1}" y1="{yhi:.1}" x2="{:.1}" y2="{yhi:.1}" stroke="#222"/><line x1="{:.1}" y1="{ylo:.1}" x2="{:.1}" y2="{ylo:.1}" stroke="#222"/>"##,
                    cx - 3.0,
                    cx + 3.0,
                    cx - 3.0,
                    cx + 3.0
                );
            }
            if p.series.len() == 1 {
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#222">{}</text>"##,
                    x + bw / 2.0,
                    y - 3.0,
                    esc(&(p.value_format)(*v))
                );
            }
        }
        let lx = x0 + left + group * ci as f64 + group / 2.0;
        let ly = y0 + top + ph + 12.0;
        let _ = writeln!(
            out,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="10" text-anchor="end" transform="rotate(-30 {lx:.1} {ly:.1})" fill="#222">{}</text>"##,
            esc(cat)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#444"/>"##,
        x0 + left,
        y0 + top + ph,
        x0 + left + pw,
        y0 + top + ph
    );
    for (k, (v, label)) in p.refs.iter().enumerate() {
        let y = ypos(*v);
        // Stagger the labels so close lines stay readable.
        let lx = x0 + left + pw * (1.0 - 0.22 * k as f64) - 2.0;
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#c62828" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end" fill="#c62828">{}</text>"##,
            x0 + left,
            x0 + left + pw,
            lx,
            y - 2.0,
            esc(label)
        );
    }
    if p.series.len() > 1 {
        let mut lx = x0 + left + 4.0;
        for s in &p.series {
            let _ = writeln!(
                out,
                r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#222">{}</text>"##,
                y0 + top - 2.0,
                s.color,
                lx + 13.0,
                y0 + top + 7.0,
                esc(&s.name)
            );
            lx += 16.0 + 6.5 * s.name.len() as f64;
        }
    }
}

/// Panels in a grid of `cols` columns.
pub fn render(title: &str, subtitle: &str, panels: &[Panel], cols: usize) -> String {
    let pw = 480.0;
    let ph = 280.0;
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols);
    let w = pw * cols as f64;
    let h = 48.0 + ph * rows as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="38" font-size="11" fill="#444">{}</text>"##,
        esc(subtitle)
    );
    for (i, p) in panels.iter().enumerate() {
        let x0 = pw * (i % cols) as f64;
        let y0 = 48.0 + ph * (i / cols) as f64;
        panel(&mut out, p, x0, y0, pw, ph);
    }
    out.push_str("</svg>\n");
    out
}
