//! Counters and latency histograms the node keeps for `/metrics` (Prometheus text format,
//! served by the web door). Cheap: a mutex around small maps, taken once per call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (b, c) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if secs <= *b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

#[derive(Default)]
pub struct Metrics {
    /// gRPC calls by method path (`/fleet.v1.Fleet/ListAgents`).
    rpc: Mutex<BTreeMap<String, Histogram>>,
    /// Web door requests by route and status code.
    web: Mutex<BTreeMap<(String, u16), Histogram>>,
    /// Sends answered by this node (here or forwarded), by outcome word.
    sends: Mutex<BTreeMap<String, u64>>,
}

/// One labelled series: (labels, value).
type Series = Vec<(String, f64)>;

impl Metrics {
    pub fn rpc(&self, method: &str, took: Duration) {
        let mut m = self.rpc.lock().expect("metrics");
        m.entry(method.to_string()).or_default().observe(took.as_secs_f64());
    }

    pub fn web(&self, route: &str, status: u16, took: Duration) {
        let mut m = self.web.lock().expect("metrics");
        m.entry((route.to_string(), status)).or_default().observe(took.as_secs_f64());
    }

    pub fn send(&self, outcome: &str) {
        *self.sends.lock().expect("metrics").entry(outcome.to_string()).or_default() += 1;
    }

    /// This registry's series, in the text format.
    pub fn render(&self, out: &mut String) {
        let sends: Series =
            self.sends.lock().expect("metrics").iter().map(|(k, v)| (format!("outcome=\"{k}\""), *v as f64)).collect();
        counter(out, "fleet_sends_total", "Sends answered by this node, by outcome.", &sends);
        let rpc: Vec<(String, Histogram)> =
            self.rpc.lock().expect("metrics").iter().map(|(k, h)| (format!("method=\"{k}\""), h.clone())).collect();
        histogram(out, "fleet_rpc_duration_seconds", "gRPC calls served, until the response headers.", &rpc);
        let web: Vec<(String, Histogram)> = self
            .web
            .lock()
            .expect("metrics")
            .iter()
            .map(|((r, s), h)| (format!("route=\"{r}\",status=\"{s}\""), h.clone()))
            .collect();
        histogram(out, "fleet_web_request_duration_seconds", "Web door requests, until the response headers.", &web);
    }
}

/// Times every gRPC call the doors serve (until the response headers: for a stream, until it
/// starts), by method path.
#[derive(Clone)]
pub struct RpcTimingLayer(pub std::sync::Arc<Metrics>);

impl<S> tower::Layer<S> for RpcTimingLayer {
    type Service = RpcTiming<S>;
    fn layer(&self, inner: S) -> RpcTiming<S> {
        RpcTiming { inner, metrics: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct RpcTiming<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for RpcTiming<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        // Only the services' own paths name a series (a client cannot add series at will).
        let method = if path.starts_with("/fleet.v1.") || path.starts_with("/grpc.") { path } else { "other" };
        let (method, start, metrics) = (method.to_string(), std::time::Instant::now(), self.metrics.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            metrics.rpc(&method, start.elapsed());
            r
        })
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn series(out: &mut String, name: &str, labels: &str, v: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {v}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

pub fn gauge(out: &mut String, name: &str, help: &str, values: &[(String, f64)]) {
    header(out, name, help, "gauge");
    for (l, v) in values {
        series(out, name, l, *v);
    }
}

pub fn counter(out: &mut String, name: &str, help: &str, values: &[(String, f64)]) {
    header(out, name, help, "counter");
    for (l, v) in values {
        series(out, name, l, *v);
    }
}

fn histogram(out: &mut String, name: &str, help: &str, values: &[(String, Histogram)]) {
    header(out, name, help, "histogram");
    for (labels, h) in values {
        for (b, c) in BUCKETS.iter().zip(h.counts) {
            series(out, &format!("{name}_bucket"), &format!("{labels},le=\"{b}\""), c as f64);
        }
        series(out, &format!("{name}_bucket"), &format!("{labels},le=\"+Inf\""), h.count as f64);
        series(out, &format!("{name}_sum"), labels, h.sum);
        series(out, &format!("{name}_count"), labels, h.count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labelled() {
        let m = Metrics::default();
        m.web("/api/v1/agents", 200, Duration::from_millis(3));
        m.web("/api/v1/agents", 200, Duration::from_millis(300));
        m.send("accepted");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("fleet_sends_total{outcome=\"accepted\"} 1\n"), "{out}");
        let b = "fleet_web_request_duration_seconds_bucket{route=\"/api/v1/agents\",status=\"200\",le=";
        assert!(out.contains(&format!("{b}\"0.001\"}} 0\n")), "{out}");
        assert!(out.contains(&format!("{b}\"0.005\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("{b}\"0.5\"}} 2\n")), "{out}");
        assert!(out.contains(&format!("{b}\"+Inf\"}} 2\n")), "{out}");
        assert!(out.contains("fleet_web_request_duration_seconds_count{route=\"/api/v1/agents\",status=\"200\"} 2\n"));
    }
}
