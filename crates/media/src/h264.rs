//! Minimal Annex-B helpers: enough to tell keyframes from the rest.

/// The NAL units of an Annex-B access unit (start codes `00 00 01` / `00 00 00 01`), each
/// from its header byte to the next start code, trailing zero bytes dropped.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let start_code_end = |from: usize| {
        (from..data.len().saturating_sub(2))
            .find(|&i| data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1)
            .map(|i| i + 3)
    };
    let mut next = start_code_end(0);
    std::iter::from_fn(move || loop {
        let start = next?;
        next = start_code_end(start);
        let end = next.map_or(data.len(), |n| n - 3);
        let mut nal = &data[start..end.max(start)];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// NAL unit types of an Annex-B access unit.
pub fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    nal_units(data).map(|n| n[0] & 0x1f)
}

/// True when the access unit holds an IDR slice (type 5): decoding can (re)start here.
pub fn is_keyframe(data: &[u8]) -> bool {
    nal_types(data).any(|t| t == 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_types_behind_both_start_codes() {
        let au = [0, 0, 0, 1, 0x67, 9, 9, 0, 0, 1, 0x68, 7, 0, 0, 0, 1, 0x65, 1, 2];
        assert_eq!(nal_types(&au).collect::<Vec<_>>(), vec![7, 8, 5]);
        assert!(is_keyframe(&au));
        let p = [0, 0, 0, 1, 0x41, 1, 2, 3];
        assert!(!is_keyframe(&p));
        assert_eq!(nal_types(&[]).count(), 0);
        assert_eq!(nal_types(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn splits_units_at_start_codes_and_drops_trailing_zeros() {
        let au = [0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 7, 0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0];
        let units: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(units, vec![&[0x67, 9][..], &[0x68, 7][..], &[0x65, 0, 0, 3, 1][..]]);
        // Empty units (start code after start code, or zeros only) are skipped.
        assert_eq!(nal_units(&[0, 0, 1, 0, 0, 1, 0x41, 5, 0, 0, 1, 0]).collect::<Vec<_>>(), vec![&[0x41, 5][..]]);
    }
}
