//! The plot (SVG) of the run.

use super::stats::*;
use super::*;
use crate::svg::{self, Panel, Series};

impl Report<'_> {
    pub(super) fn svg(&self) -> String {
        let ids: Vec<&str> = self
            .ids()
            .into_iter()
            .filter(|id| {
                self.total(id, Scenario::Frames, None).is_some()
                    || self.total(id, Scenario::FramesMax, None).is_some()
                    || *id == DIRECT
            })
            .collect();
        let proxies: Vec<&str> = ids.iter().copied().filter(|i| *i != DIRECT).collect();
        let palette = |id: &str| -> String {
            match id {
                DIRECT => "#9e9e9e",
                HAPROXY => "#2e7d32",
                ENVOY => "#1565c0",
                NOOP => "#64b5f6",
                NOOP_RAW => "#90caf9",
                "mksgate" => "#e65100",
                MK_RAW => "#ffb74d",
                _ => "#8d6e63",
            }
            .to_string()
        };
        let level_colors = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"];
        let hs_series: Vec<Series> = self
            .levels()
            .iter()
            .enumerate()
            .map(|(i, c)| Series {
                name: format!("{c} client{}", if *c == 1 { "" } else { "s" }),
                color: level_colors[i % level_colors.len()].to_string(),
                bars: ids
                    .iter()
                    .map(|id| {
                        self.total(id, Scenario::Handshake, Some(*c))
                            .and_then(Self::rate)
                            .map(|v| (v, None))
                    })
                    .collect(),
            })
            .collect();
        let single = |title: &str,
                      sys: &[&str],
                      f: &dyn Fn(&str) -> svg::Bar,
                      vf: fn(f64) -> String| Panel {
            title: title.to_string(),
            categories: sys.iter().map(|i| self.label(i)).collect(),
            series: vec![Series {
                name: String::new(),
                color: "#555".into(),
                bars: sys.iter().map(|i| f(i)).collect(),
            }],
            category_colors: Some(sys.iter().map(|i| palette(i)).collect()),
            value_format: vf,
            ymin: None,
            refs: Vec::new(),
        };
        let f0: fn(f64) -> String = |v| format!("{v:.0}");
        let f1: fn(f64) -> String = |v| format!("{v:.1}");
        let f2: fn(f64) -> String = |v| format!("{v:.2}");
        let f3: fn(f64) -> String = |v| format!("{v:.2}");
        let us = |s: &Sample| Self::cpu_per_op(s).map(|c| c * 1e6);
        // mksgate ÷ X at the same load: total ratio, whisker ± 2 standard
        // errors of the per-window ratios.
        let ratio_bar =
            |other: &str, a: &str, sc: Scenario, m: fn(&Sample) -> Option<f64>| -> svg::Bar {
                let (t, per) = self.ratio_cycles(a, other, sc, None, m);
                let t = t?;
                let wh = mean_se(&per)
                    .filter(|(_, se)| se.is_finite())
                    .map(|(_, se)| (t - 2.0 * se, t + 2.0 * se));
                Some((t, wh))
            };
        let ratio_scen: [(&str, Scenario, Metric); 3] = [
            ("per handshake", Scenario::HandshakePaced, Self::cpu_per_op),
            ("per console frame", Scenario::Frames, Self::cpu_per_op),
            ("per GB bulk", Scenario::Bulk, Self::cpu_per_gb),
        ];
        let ratio_series: Vec<Series> = [
            ("mksgate ÷ Envoy", MK, ENVOY, "#1565c0"),
            ("mksgate ÷ Envoy+noop", MK, NOOP, "#64b5f6"),
            ("raw ÷ shipped mksgate", MK_RAW, MK, "#ffb74d"),
        ]
        .iter()
        .map(|(name, a, b, color)| Series {
            name: name.to_string(),
            color: color.to_string(),
            bars: ratio_scen
                .iter()
                .map(|(_, sc, m)| ratio_bar(b, a, *sc, *m))
                .collect(),
        })
        .collect();
        let panels = vec![
            Panel {
                title: "Handshakes/s, as fast as it goes".into(),
                categories: ids.iter().map(|i| self.label(i)).collect(),
                series: hs_series,
                category_colors: None,
                value_format: f0,
                ymin: None,
                refs: Vec::new(),
            },
            Panel {
                title: "Proxy CPU ratio at the same load (±2 SE)".into(),
                categories: ratio_scen.iter().map(|(n, _, _)| n.to_string()).collect(),
                series: ratio_series,
                category_colors: None,
                value_format: f3,
                ymin: Some(0.8),
                refs: vec![
                    (1.0, "1.00".into()),
                    (T_STREAM_VS_ENVOY, "target 1.02".into()),
                    (T_HANDSHAKE_VS_NOOP, "target 1.05".into()),
                ],
            },
            single(
                "Proxy CPU µs per handshake, same load",
                &proxies,
                &|id| {
                    self.total(id, Scenario::HandshakePaced, None)
                        .and_then(us)
                        .map(|v| (v, None))
                },
                f0,
            ),
            single(
                "Proxy CPU µs per console frame, same load",
                &proxies,
                &|id| {
                    self.total(id, Scenario::Frames, None)
                        .and_then(Self::frame_us)
                        .map(|v| (v, None))
                },
                f1,
            ),
            single(
                "Proxy CPU s per GB, bulk, same load",
                &proxies,
                &|id| {
                    self.total(id, Scenario::Bulk, None)
                        .and_then(Self::cpu_per_gb)
                        .map(|v| (v, None))
                },
                f2,
            ),
            single(
                "Console round trips/s, as fast as it goes",
                &ids,
                &|id| {
                    self.total(id, Scenario::FramesMax, None)
                        .and_then(Self::rate)
                        .map(|v| (v, None))
                },
                f0,
            ),
            single(
                "Bulk MB/s (both ways), as fast as it goes",
                &ids,
                &|id| {
                    self.total(id, Scenario::BulkMax, None)
                        .filter(|s| s.wall_s > 0.0)
                        .map(|s| (s.bytes as f64 / s.wall_s / 1e6, None))
                },
                f0,
            ),
            Panel {
                title: format!(
                    "Proxy RSS MB, idle and with {} sessions",
                    self.r.config.idle_sessions
                ),
                categories: proxies.iter().map(|i| self.label(i)).collect(),
                series: vec![
                    Series {
                        name: "idle".into(),
                        color: "#bdbdbd".into(),
                        bars: proxies
                            .iter()
                            .map(|i| {
                                self.idle(i)
                                    .and_then(|s| s.rss_before_kb)
                                    .map(|k| (k as f64 / 1024.0, None))
                            })
                            .collect(),
                    },
                    Series {
                        name: "with sessions".into(),
                        color: "#6a1b9a".into(),
                        bars: proxies
                            .iter()
                            .map(|i| {
                                self.idle(i)
                                    .and_then(|s| s.rss_kb)
                                    .map(|k| (k as f64 / 1024.0, None))
                            })
                            .collect(),
                    },
                ],
                category_colors: None,
                value_format: f0,
                ymin: None,
                refs: Vec::new(),
            },
        ];
        let m = &self.r.meta;
        svg::render(
            "mksgate benchmark: one run, proxy pinned to CPU 0, load generator + stand-in on CPU 1",
            &format!(
                "{} · {} · {} CPUs · plaintext ws · same load = all proxies at once, {} windows · as fast as it goes = one at a time, {} cycles{}",
                m.started_utc,
                m.cpu_model,
                m.cpus,
                self.r.config.stream_cycles,
                self.r.config.cycles,
                if m.quick { " · QUICK MODE" } else { "" }
            ),
            &panels,
            2,
        )
    }
}
