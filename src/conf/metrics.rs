//! `gateway_metrics_buckets`: the bounds of the latency histograms.

use nginx_sys::ngx_conf_t;

use super::util::{arg_str, args, compile_cv, duplicate, invalid, ComplexValue};
use super::MainConf;
use gateway_core::metrics::bounds_in_units;

/// Units per second of the request and upstream histograms (microseconds; nginx measures
/// these times in milliseconds).
pub const REQUEST_SCALE: u64 = 1_000_000;
/// Units per second of the gateway's own time (nanoseconds).
pub const GATEWAY_SCALE: u64 = 1_000_000_000;
/// Default bounds of the request and upstream histograms, in seconds.
pub const DEFAULT_REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Default bounds of the gateway's own time, in seconds (10 us to 10 ms).
pub const DEFAULT_GATEWAY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
];

/// The histogram bounds of a configuration, in units.
#[derive(Debug, Default, Clone)]
pub struct Buckets {
    /// `gateway_metrics_buckets request ...` (request and upstream times, microseconds).
    pub request: Option<Vec<u64>>,
    /// `gateway_metrics_buckets gateway ...` (the gateway's own time, nanoseconds).
    pub gateway: Option<Vec<u64>>,
}

impl Buckets {
    /// Bounds of the request and upstream histograms.
    pub fn request(&self) -> Vec<u64> {
        self.request.clone().unwrap_or_else(|| {
            bounds_in_units(DEFAULT_REQUEST_BUCKETS, REQUEST_SCALE).unwrap_or_default()
        })
    }

    /// Bounds of the gateway's own time.
    pub fn gateway(&self) -> Vec<u64> {
        self.gateway.clone().unwrap_or_else(|| {
            bounds_in_units(DEFAULT_GATEWAY_BUCKETS, GATEWAY_SCALE).unwrap_or_default()
        })
    }
}

/// `gateway_metrics_buckets request|gateway SECONDS...`
pub fn set_buckets(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let a = args(cf);
    let which = arg_str(&a[1])?;
    let scale = match which {
        "request" => REQUEST_SCALE,
        "gateway" => GATEWAY_SCALE,
        _ => return Err(invalid(cf, which, "it must be \"request\" or \"gateway\"")),
    };
    let mut secs = Vec::with_capacity(a.len() - 2);
    for v in &a[2..] {
        let t = arg_str(v)?;
        let x: f64 = t
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && !t.starts_with(['+', '-']))
            .ok_or_else(|| invalid(cf, t, "a number of seconds is expected"))?;
        secs.push(x);
    }
    let units = bounds_in_units(&secs, scale)
        .map_err(|e| format!("invalid bounds in \"gateway_metrics_buckets\" directive: {e}"))?;
    let slot = if scale == REQUEST_SCALE {
        &mut mcf.buckets.request
    } else {
        &mut mcf.buckets.gateway
    };
    if slot.is_some() {
        return Err(duplicate(cf));
    }
    *slot = Some(units);
    Ok(())
}

/// Most consumers `gateway_metrics_consumers max=` may give series of their own.
pub const MAX_CONSUMER_SERIES: usize = 50_000;

/// `gateway_metrics_consumers`.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerMetrics {
    /// Consumers with series of their own; the others count as `other`.
    pub max: usize,
    /// `value=`: what names the consumer (default: the consumer, else a verified `sub`).
    pub value: Option<ComplexValue>,
    /// First word of the table in the metrics zone (set at postconfiguration).
    pub base: usize,
}

/// `gateway_metrics_consumers max=N [value=complex]`
pub fn set_consumers(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    if mcf.consumer_metrics.is_some() {
        return Err(duplicate(cf));
    }
    let a = args(cf).to_vec();
    let mut max = None;
    let mut value = None;
    for v in &a[1..] {
        let t = arg_str(v)?;
        if let Some(n) = t.strip_prefix("max=") {
            let n = n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONSUMER_SERIES).contains(n))
                .ok_or_else(|| {
                    invalid(
                        cf,
                        t,
                        &format!("max is a number from 1 to {MAX_CONSUMER_SERIES}"),
                    )
                })?;
            max = Some(n);
        } else if t.starts_with("value=") && t.len() > 6 {
            let mut s = *v;
            // SAFETY: skipping "value=" inside the argument.
            s.data = unsafe { s.data.add(6) };
            s.len -= 6;
            value = Some(compile_cv(cf, &s)?);
        } else {
            return Err(invalid(cf, t, "\"max=\" and \"value=\" are expected"));
        }
    }
    let max = max.ok_or_else(|| {
        "\"max=\" is required in \"gateway_metrics_consumers\" directive".to_string()
    })?;
    mcf.consumer_metrics = Some(ConsumerMetrics {
        max,
        value,
        base: 0,
    });
    Ok(())
}
