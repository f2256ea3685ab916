//! W3C trace context: the gateway's span of a request (`gateway_trace on`), or the caller's
//! trace passed through (`off`), for the variables and the JSON record.

use std::cell::RefCell;

use gateway_core::trace::{self, Parent, RandomPool, Span};
use ngx::http::Request;

use super::RequestCtx;
use crate::conf::{LocConf, MainConf};

thread_local! {
    /// This worker's random bytes for ids (drawn from the OS after fork, on first use).
    static RNG: RefCell<RandomPool> = RefCell::new(RandomPool::default());
}

/// The trace context of a request.
#[derive(Debug, Clone, Copy)]
pub enum TraceState {
    /// `gateway_trace on`: the gateway's span.
    Span(Span),
    /// `gateway_trace off`: a valid incoming `traceparent`, passed through.
    Incoming(Parent),
}

/// The valid `traceparent` of the request, if any.
pub fn incoming(request: &Request, mcf: &MainConf) -> Option<Parent> {
    trace::parse(super::log::var(request, mcf.log_vars.traceparent))
}

/// The request's trace context, made once per request (the first time a variable or the log
/// record asks) with the settings of the location asking.
pub fn state(
    request: &Request,
    ctx: &mut RequestCtx,
    lcf: &LocConf,
    mcf: &MainConf,
) -> Option<TraceState> {
    if ctx.trace.is_none() {
        let parent = incoming(request, mcf);
        ctx.trace = Some(if lcf.trace.on() {
            let span = RNG.with(|r| Span::new(parent, lcf.trace.sample, &mut r.borrow_mut()));
            Some(TraceState::Span(span))
        } else {
            parent.map(TraceState::Incoming)
        });
    }
    ctx.trace.flatten()
}

impl TraceState {
    /// Trace id, this hop's span id (the caller's when passed through), parent span id.
    pub fn ids(&self) -> (&[u8; 32], &[u8; 16], Option<&[u8; 16]>) {
        match self {
            TraceState::Span(s) => (&s.trace_id, &s.span_id, s.parent_id.as_ref()),
            TraceState::Incoming(p) => (&p.trace_id, &p.span_id, None),
        }
    }

    /// The trace id as 16 bytes when the trace is sampled (for exemplars).
    pub fn sampled_trace_id(&self) -> Option<[u8; 16]> {
        let (hex, sampled) = match self {
            TraceState::Span(s) => (&s.trace_id, s.sampled),
            TraceState::Incoming(p) => (&p.trace_id, p.sampled),
        };
        if !sampled {
            return None;
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(hex.chunks(2)) {
            let d = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            *o = d(pair[0]) << 4 | d(pair[1]);
        }
        Some(out)
    }

    /// The `traceparent` for the upstream.
    pub fn traceparent(&self) -> [u8; 55] {
        match self {
            TraceState::Span(s) => s.traceparent(),
            TraceState::Incoming(p) => Span {
                trace_id: p.trace_id,
                span_id: p.span_id,
                parent_id: None,
                sampled: p.sampled,
            }
            .traceparent(),
        }
    }
}
