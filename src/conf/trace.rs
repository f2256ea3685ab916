//! `gateway_trace`: W3C trace context.

use nginx_sys::ngx_conf_t;

use super::util::{arg_str, args, duplicate, invalid};

/// `gateway_trace on|off [sample=ratio]` of one block (`None`: not set here).
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceConf {
    pub on: Option<bool>,
    /// Probability that a trace the gateway starts is sampled (0 to 1).
    pub sample: f64,
}

impl TraceConf {
    pub fn merge(&mut self, prev: &TraceConf) {
        if self.on.is_none() {
            *self = *prev;
        }
    }

    /// Whether the gateway takes part in traces here.
    pub fn on(&self) -> bool {
        self.on.unwrap_or(false)
    }
}

/// `gateway_trace on|off [sample=ratio]`
pub fn set_trace(cf: &mut ngx_conf_t, c: &mut TraceConf) -> Result<(), String> {
    if c.on.is_some() {
        return Err(duplicate(cf));
    }
    let on = super::on_off(cf)?;
    let a = args(cf);
    let mut sample = 1.0;
    for v in &a[2..] {
        let t = arg_str(v)?;
        let ratio = t
            .strip_prefix("sample=")
            .filter(|_| on)
            .ok_or_else(|| invalid(cf, t, "only \"sample=\" may follow \"on\""))?;
        sample = ratio
            .parse::<f64>()
            .ok()
            .filter(|x| (0.0..=1.0).contains(x) && !ratio.starts_with('+'))
            .ok_or_else(|| invalid(cf, t, "the ratio is a number from 0 to 1"))?;
    }
    *c = TraceConf {
        on: Some(on),
        sample,
    };
    Ok(())
}
