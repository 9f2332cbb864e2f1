//! A digest of what the controller last published or wrote, to tell that
//! nothing changed without keeping a copy: of the generated part of the
//! table (at 2,000 HTTPRoutes and 50,000 endpoints its serialised copy was
//! 8 MiB, and a second one was made to compare) and of each status applied.

use std::hash::{DefaultHasher, Hasher};
use std::io;

/// 128 bits of the JSON serialisation of `value`, streamed through two
/// differently keyed SipHashes (no buffer): equal digests mean equal
/// values short of a 2^-128 accident.
pub fn digest<T: serde::Serialize + ?Sized>(value: &T) -> Option<u128> {
    let mut w = Digest([DefaultHasher::new(), DefaultHasher::new()]);
    w.0[1].write_u64(0x0063_7574_6f76_6572);
    serde_json::to_writer(&mut w, value).ok()?;
    let [a, b] = w.0.map(|h| h.finish());
    Some(u128::from(a) << 64 | u128::from(b))
}

struct Digest([DefaultHasher; 2]);

impl io::Write for Digest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for h in &mut self.0 {
            h.write(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gateway::Generated;

    #[test]
    fn equal_parts_have_equal_digests_and_one_endpoint_changes_it() {
        let mut g = Generated::default();
        g.groups.insert(
            "shop.web.80".into(),
            crate::config::model::GroupConfig::new(vec!["10.0.0.1:8080".into()]),
        );
        let before = digest(&g);
        assert_eq!(before, digest(&g.clone()));
        if let Some(group) = g.groups.get_mut("shop.web.80") {
            group.endpoints.push("10.0.0.2:8080".into());
        }
        assert_ne!(before, digest(&g));
        assert!(before.is_some());
    }
}
