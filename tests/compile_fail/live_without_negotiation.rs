//! A device cannot go Live before its features were accepted
//! (FEATURES_OK): only `Negotiated` has `go_live`.
use hypervisor::virtio::Negotiating;

fn skip_features_ok() {
    let _live = Negotiating::new().go_live();
}

fn main() {}
