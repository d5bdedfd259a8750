//! Unit tests of the PyTorch weights: parameter names, configurations and layer mapping.

use super::state_dict::ParamName;
use super::*;

#[test]
fn param_names() {
    let p = ParamName::parse("bias_hh_l12_reverse").unwrap();
    assert_eq!(
        (p.kind, p.side, p.layer, p.reverse),
        ("bias", "hh", 12, true)
    );
    assert!(ParamName::parse("weight_hr_l0").is_some());
    for bad in [
        "weight_ih_l",
        "weight_ih_lx",
        "weight_xx_l0",
        "weights_ih_l0",
        "weight_ih_l0_rev",
        "fc.weight",
    ] {
        assert!(ParamName::parse(bad).is_none(), "{bad}");
    }
    let cfg = TorchConfig {
        prefix: "enc.".into(),
        ..TorchConfig::new(TorchKind::Gru)
    };
    assert!(cfg.is_param_key("enc.weight_ih_l0"));
    assert!(!cfg.is_param_key("weight_ih_l0"));
    assert!(!cfg.is_param_key("enc.fc.weight"));
}
