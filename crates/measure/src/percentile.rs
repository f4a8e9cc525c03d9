//! The nearest-rank percentile: the smallest sample with at least `p` % of the samples
//! at or below it (no interpolation, so the answer is always a measured value).

/// The `p`-th percentile (0..=100) of `v` by nearest rank; sorts `v` in place. `None`
/// when `v` is empty. Incomparable values (NaN) sort as equal to their neighbours.
pub fn percentile<T: Copy + PartialOrd>(v: &mut [T], p: f64) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f32> = (1..=100).rev().map(|x| x as f32).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 95.0), Some(95.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile::<f64>(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [7.0], 95.0), Some(7.0));
    }

    #[test]
    fn small_samples_round_up_to_a_measured_value() {
        // 4 samples: p50 is the 2nd, p95 and p99 the 4th (never an interpolation).
        let mut v = [40u64, 10, 30, 20];
        assert_eq!(percentile(&mut v, 50.0), Some(20));
        assert_eq!(percentile(&mut v, 95.0), Some(40));
        assert_eq!(percentile(&mut v, 26.0), Some(20));
        assert_eq!(percentile(&mut v, 25.0), Some(10));
    }
}
