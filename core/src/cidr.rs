//! The `ip` claim: one address or a CIDR block.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.1.2.3`, `10.1.0.0/16`, `2001:db8::/32`. Host bits below the
    /// prefix must be zero, so a typo cannot widen the block silently.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (a, Some(p.parse::<u8>().ok()?))
            }
            None => (text, None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != Some(network) {
            return None;
        }
        // Clients are matched as IPv4 when they come IPv4-mapped, so a block
        // written IPv4-mapped (`::ffff:10.0.0.0/104`) is read as IPv4 too.
        if let IpAddr::V6(v6) = network {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Some(Cidr {
                    network: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Some(cidr)
    }

    fn masked(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::V4((u32::from(v4) & mask).into()))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::V6((u128::from(v6) & mask).into()))
            }
        }
    }

    /// Whether `ip` lies in the block. An IPv4-mapped IPv6 client address
    /// (`::ffff:1.2.3.4`, from a dual-stack listener) matches as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        self.masked(ip) == Some(self.network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(!c.contains(ip("10.2.0.1")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let any = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any.contains(ip("8.8.8.8")) && !any.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        let mapped = Cidr::parse("::ffff:10.1.0.0/112").unwrap();
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.1.9.9")));
        assert!(!mapped.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("::ffff:192.0.2.7")
            .unwrap()
            .contains(ip("192.0.2.7")));
        for bad in [
            "10.1.0.1/16",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x",
            "::/129",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
