//! How a text is split into SMS segments (3GPP TS 23.038 / 23.040): GSM-7 when every
//! character is in the GSM 03.38 default alphabet or its extension table (which costs two
//! septets: escape + code), else UCS-2. One segment holds 160 septets or 70 UTF-16 units; a
//! concatenated message's segments hold 153 / 67 (the rest is the user data header). An
//! escape pair or a surrogate pair is never split across segments.
//!
//! Hand-written: the crates that segment (a port of Twilio's segment calculator) are not in
//! our registry, and the `gsm7` crates pack septets but do not segment. The tables are the
//! standard's, and the tests pin the boundaries.

/// GSM 03.38 default alphabet (the escape, 0x1B, left out: it is not a character).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: each costs an escape septet too.
const GSM_EXTENDED: &str = "\u{0C}^{}\\[~]|€";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented {
    pub encoding: Encoding,
    /// The text of each segment, in order.
    pub segments: Vec<String>,
}

/// What one character costs: septets in GSM-7, `None` if it has no GSM-7 form.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

pub fn segment(text: &str) -> Segmented {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    let (encoding, costs, single, multi) = match gsm {
        Some(costs) => (Encoding::Gsm7, costs, 160, 153),
        None => (Encoding::Ucs2, text.chars().map(char::len_utf16).collect(), 70, 67),
    };
    if costs.iter().sum::<usize>() <= single {
        return Segmented { encoding, segments: if text.is_empty() { vec![] } else { vec![text.to_owned()] } };
    }
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for (c, cost) in text.chars().zip(costs) {
        if used + cost > multi {
            segments.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += cost;
    }
    if !current.is_empty() {
        segments.push(current);
    }
    Segmented { encoding, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_boundaries() {
        let one = segment(&"a".repeat(160));
        assert_eq!((one.encoding, one.segments.len()), (Encoding::Gsm7, 1));
        let two = segment(&"a".repeat(161));
        assert_eq!(two.segments.iter().map(|s| s.chars().count()).collect::<Vec<_>>(), [153, 8]);
        // The extension table costs two septets: 80 euro signs fill one segment, 81 do not.
        assert_eq!(segment(&"€".repeat(80)).segments.len(), 1);
        assert_eq!(segment(&"€".repeat(81)).segments.len(), 2);
        // An escape pair is not split: 152 septets, then the euro sign moves on.
        let split = segment(&format!("{}€{}", "a".repeat(152), "b".repeat(10)));
        assert_eq!(split.segments[0].chars().count(), 152);
        assert!(split.segments[1].starts_with('€'));
    }

    #[test]
    fn ucs2_boundaries_and_surrogate_pairs() {
        let one = segment(&"ж".repeat(70));
        assert_eq!((one.encoding, one.segments.len()), (Encoding::Ucs2, 1));
        assert_eq!(segment(&"ж".repeat(71)).segments.iter().map(|s| s.chars().count()).collect::<Vec<_>>(), [67, 4]);
        // An emoji is two UTF-16 units and is never cut in half.
        let emoji = segment(&format!("{}😀x", "a".repeat(66)));
        assert_eq!(emoji.encoding, Encoding::Ucs2);
        assert_eq!(emoji.segments.len(), 1, "66 + 2 + 1 = 69 units fit one segment");
        let cut = segment(&format!("{}😀{}", "a".repeat(66), "b".repeat(10)));
        assert_eq!(cut.segments[0], "a".repeat(66), "the pair moves to the next segment");
        assert_eq!(cut.segments.concat(), format!("{}😀{}", "a".repeat(66), "b".repeat(10)));
    }

    #[test]
    fn one_non_gsm_character_makes_it_ucs2() {
        assert_eq!(segment("Hello ça va").encoding, Encoding::Ucs2, "ç is not in GSM 03.38 (Ç is)");
        assert_eq!(segment("Hello Ça va").encoding, Encoding::Gsm7);
        assert!(segment("").segments.is_empty());
    }
}
