//! Minimal Annex-B helpers: enough to tell keyframes from the rest.

/// NAL unit types of an Annex-B access unit (start codes `00 00 01` / `00 00 00 01`).
pub fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        while i + 3 < data.len() {
            if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                let t = data[i + 3] & 0x1f;
                i += 3;
                return Some(t);
            }
            i += 1;
        }
        None
    })
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
}
