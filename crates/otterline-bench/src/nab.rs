//! Scoring anomaly detections the way the Numenta Anomaly Benchmark (NAB v1.1) does.
//!
//! Per file: the first 15 % of rows (at most 750) are a probation period and not
//! scored. Inside a labelled window only the earliest detection counts, worth
//! `tp × scaled_sigmoid(−(end − i + 1) / width)` (about 0.99 at the window's start, 0 at
//! its end). A detection outside every window is a false positive worth
//! `fp × scaled_sigmoid(distance past the previous window / (its width − 1))` (−1 when
//! well past it or before any window). Every window without a detection costs `fn`.
//! Over a corpus, scores are normalised so that detecting nothing scores 0 and detecting
//! every window at its start scores 100.

/// A NAB cost profile.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's `standard` profile.
pub const STANDARD: Profile = Profile { tp: 1.0, fp: 0.11, fn_: 1.0 };

/// `2·sigmoid(−5x) − 1`, and −1 beyond x = 3.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

pub fn probation(rows: usize) -> usize {
    ((0.15 * rows as f64).floor() as usize).min(750)
}

/// The raw score of one file. `windows` are inclusive row ranges in order; `detections`
/// are row indices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FileScore {
    pub raw: f64,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub windows: usize,
}

pub fn score_file(rows: usize, windows: &[(usize, usize)], detections: &[usize], p: Profile) -> FileScore {
    let mut detections = detections.to_vec();
    detections.sort_unstable();
    detections.dedup();
    let start = probation(rows);
    let mut hit = vec![false; windows.len()];
    let mut s = FileScore { windows: windows.len(), ..Default::default() };
    for &i in detections.iter().filter(|&&i| i >= start && i < rows) {
        if let Some(w) = windows.iter().position(|&(a, b)| a <= i && i <= b) {
            if !hit[w] {
                hit[w] = true;
                let (a, b) = windows[w];
                let width = (b - a + 1) as f64;
                s.raw += p.tp * scaled_sigmoid(-((b - i + 1) as f64) / width);
                s.tp += 1;
            }
        } else {
            let prev = windows.iter().rev().find(|&&(_, b)| b < i);
            let unweighted = match prev {
                Some(&(a, b)) => scaled_sigmoid((i - b) as f64 / ((b - a + 1) as f64 - 1.0).max(1.0)),
                None => -1.0,
            };
            s.raw += p.fp * unweighted;
            s.fp += 1;
        }
    }
    s.fn_ = hit.iter().filter(|h| !**h).count();
    s.raw -= p.fn_ * s.fn_ as f64;
    s
}

/// Normalises summed raw scores: 0 for no detections, 100 for a perfect detector.
pub fn normalised(files: &[FileScore], p: Profile) -> f64 {
    let raw: f64 = files.iter().map(|f| f.raw).sum();
    let windows: f64 = files.iter().map(|f| f.windows as f64).sum();
    let null = -p.fn_ * windows;
    let perfect = p.tp * scaled_sigmoid(-1.0) * windows;
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: 100 rows (probation 15), one window at rows 40..=49.
    /// - row 10: inside probation, ignored;
    /// - row 45: first detection in the window: position −(49 − 45 + 1)/10 = −0.5,
    ///   2/(1 + e^−2.5) − 1 = 2/1.0820850 − 1 = 0.8482836;
    /// - row 47: a second detection in the same window, ignored;
    /// - row 60: 11 rows past the window, width − 1 = 9: x = 1.2222,
    ///   2/(1 + e^6.1111) − 1 = 2/451.69 − 1 = −0.9955736, × 0.11 = −0.1095131.
    ///
    /// Raw: 0.8482836 − 0.1095131 = 0.7387705. Null: −1. Perfect: 2/(1 + e^−5) − 1 = 0.9866143.
    /// Normalised: 100 × 1.7387705 / 1.9866143 = 87.52431.
    #[test]
    fn hand_worked_case() {
        let s = score_file(100, &[(40, 49)], &[10, 45, 47, 60], STANDARD);
        assert_eq!((s.tp, s.fp, s.fn_), (1, 1, 0));
        assert!((s.raw - 0.7387705).abs() < 1e-6, "{}", s.raw);
        assert!((normalised(&[s], STANDARD) - 87.52431).abs() < 1e-4);
        // Detecting nothing scores 0; detecting each window at its first row scores 100.
        let none = score_file(100, &[(40, 49)], &[], STANDARD);
        assert_eq!(normalised(&[none], STANDARD), 0.0);
        let perfect = score_file(100, &[(40, 49)], &[40], STANDARD);
        assert!((normalised(&[perfect], STANDARD) - 100.0).abs() < 1e-9);
        // A false positive before any window costs the full fp weight.
        let early = score_file(100, &[(40, 49)], &[20], STANDARD);
        assert!((early.raw - (-0.11 - 1.0)).abs() < 1e-12);
    }
}
