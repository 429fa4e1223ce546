//! The figures' statistics and formatting, and the verdicts on targets.

use super::*;

pub(super) fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".into(),
    }
}

pub(super) fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "—".into(),
    }
}

pub(super) fn range(vals: &[f64]) -> Option<(f64, f64)> {
    let mut it = vals.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
}

/// Mean and standard error of the mean.
pub(super) fn mean_se(vals: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return Some((mean, f64::NAN));
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, (var / n).sqrt()))
}

/// "cycles 0.97–1.03, mean 1.00 ± 0.01" (± one standard error).
pub(super) fn fmt_range(vals: &[f64]) -> String {
    match (range(vals), mean_se(vals)) {
        (Some((lo, hi)), Some((m, se))) if se.is_finite() => {
            format!("{lo:.3}–{hi:.3}, mean {m:.3} ± {se:.3}")
        }
        (Some((lo, hi)), _) => format!("{lo:.3}–{hi:.3}"),
        _ => "—".into(),
    }
}

pub(super) fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub(super) fn errors_text(s: &Sample) -> String {
    if s.errors.is_empty() {
        "0".into()
    } else {
        s.errors
            .iter()
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// MET / MISSED for "ratio ≤ threshold", saying when the per-window mean
/// ± 2 standard errors straddles the threshold (the run cannot tell).
pub(super) fn judge(total: Option<f64>, per: &[f64], threshold: f64) -> String {
    let Some(t) = total else {
        return verdict(None).into();
    };
    let ok = t <= threshold;
    let close = mean_se(per)
        .filter(|(_, se)| se.is_finite())
        .is_some_and(|(m, se)| (m - 2.0 * se) <= threshold && threshold <= (m + 2.0 * se));
    match (ok, close) {
        (true, false) => "**MET**".into(),
        (false, false) => "**MISSED**".into(),
        (true, true) => "**MET**, within noise (mean ± 2 SE spans the threshold)".into(),
        (false, true) => "**MISSED**, within noise (mean ± 2 SE spans the threshold)".into(),
    }
}

pub(super) fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**MET**",
        Some(false) => "**MISSED**",
        None => "not measured",
    }
}
