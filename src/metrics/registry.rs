//! The process-wide registry behind [`super::Desc`]: prometheus-client families, one per
//! declared metric, created once, labelled at use, encoded in the Prometheus text format
//! (version 0.0.4) with the same names as before (counters registered without their `_total`,
//! which the encoder appends).

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{ALL, Desc, Kind, Labels};

/// A histogram family's constructor: the declared buckets.
#[derive(Clone, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type CounterFamily = Family<Labels, Counter<f64, AtomicU64>>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type HistogramFamily = Family<Labels, Histogram, Buckets>;

/// One declared metric's family.
#[derive(Clone, Debug)]
enum Metric {
    Counter(CounterFamily),
    Gauge(GaugeFamily),
    Histogram(HistogramFamily),
}

/// Every declared metric ([`ALL`]), plus collectors that read their figures at scrape time.
#[derive(Debug)]
pub struct Registry {
    inner: prometheus_client::registry::Registry,
    families: Vec<(&'static str, Metric)>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_collectors(Vec::new())
    }
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

impl Registry {
    /// A registry of every metric in [`ALL`], and `collectors`.
    pub(crate) fn with_collectors(collectors: Vec<Box<dyn Collector>>) -> Self {
        let mut inner = prometheus_client::registry::Registry::default();
        let mut families = Vec::with_capacity(ALL.len());
        for d in ALL {
            let metric = match d.kind {
                Kind::Counter => {
                    let f = CounterFamily::default();
                    // The encoder appends `_total` to counters.
                    let name = d.name.strip_suffix("_total").unwrap_or(d.name);
                    inner.register(name, d.help, f.clone());
                    Metric::Counter(f)
                }
                Kind::Gauge => {
                    let f = GaugeFamily::default();
                    inner.register(d.name, d.help, f.clone());
                    Metric::Gauge(f)
                }
                Kind::Histogram => {
                    let f = HistogramFamily::new_with_constructor(Buckets(d.buckets));
                    inner.register(d.name, d.help, f.clone());
                    Metric::Histogram(f)
                }
            };
            families.push((d.name, metric));
        }
        for c in collectors {
            inner.register_collector(c);
        }
        Registry { inner, families }
    }

    fn family(&self, d: &'static Desc) -> Option<&Metric> {
        self.families
            .iter()
            .find(|(name, _)| *name == d.name)
            .map(|(_, m)| m)
    }

    /// Adds `by` to a counter (or gauge).
    pub(crate) fn add(&self, d: &'static Desc, l: &[(&'static str, &str)], by: f64) {
        match self.family(d) {
            // A counter never goes down: a negative step is a bug, and is dropped.
            Some(Metric::Counter(f)) if by >= 0.0 => {
                f.get_or_create(&labels(l)).inc_by(by);
            }
            Some(Metric::Gauge(f)) => {
                f.get_or_create(&labels(l)).inc_by(by);
            }
            _ => {}
        }
    }

    /// Adds one to a counter.
    pub(crate) fn inc(&self, d: &'static Desc, l: &[(&'static str, &str)]) {
        self.add(d, l, 1.0);
    }

    /// Sets a gauge.
    pub(crate) fn set(&self, d: &'static Desc, l: &[(&'static str, &str)], value: f64) {
        if let Some(Metric::Gauge(f)) = self.family(d) {
            f.get_or_create(&labels(l)).set(value);
        }
    }

    /// Removes one series (a recording that ended).
    pub(crate) fn remove(&self, d: &'static Desc, l: &[(&'static str, &str)]) {
        let l = labels(l);
        match self.family(d) {
            Some(Metric::Counter(f)) => {
                f.remove(&l);
            }
            Some(Metric::Gauge(f)) => {
                f.remove(&l);
            }
            Some(Metric::Histogram(f)) => {
                f.remove(&l);
            }
            None => {}
        }
    }

    /// Replaces every series of a gauge (values gathered at scrape time).
    pub(crate) fn replace(&self, d: &'static Desc, series: Vec<(Labels, f64)>) {
        if let Some(Metric::Gauge(f)) = self.family(d) {
            f.clear();
            for (l, v) in series {
                f.get_or_create(&l).set(v);
            }
        }
    }

    /// The current value of a counter or gauge (0 when the series does not exist).
    pub fn get(&self, d: &'static Desc, l: &[(&'static str, &str)]) -> f64 {
        let l = labels(l);
        match self.family(d) {
            Some(Metric::Counter(f)) => f.get(&l).map_or(0.0, |c| c.get()),
            Some(Metric::Gauge(f)) => f.get(&l).map_or(0.0, |g| g.get()),
            _ => 0.0,
        }
    }

    /// Records one observation in a histogram.
    pub(crate) fn observe(&self, d: &'static Desc, l: &[(&'static str, &str)], value: f64) {
        if let Some(Metric::Histogram(f)) = self.family(d) {
            f.get_or_create(&labels(l)).observe(value);
        }
    }

    /// Every metric in the Prometheus text format (0.0.4). Metrics without series show only
    /// their HELP and TYPE lines, so a scraper sees the full list from the first scrape.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner);
        // prometheus-client leaves out families without series; a scraper (and an operator
        // writing alerts) should see every metric from the first scrape, so their HELP and TYPE
        // lines are added here (valid in the text format: a metric with no samples).
        for (d, (_, metric)) in ALL.iter().zip(&self.families) {
            let (empty, kind) = match metric {
                Metric::Counter(f) => (f.is_empty(), "counter"),
                Metric::Gauge(f) => (f.is_empty(), "gauge"),
                Metric::Histogram(f) => (f.is_empty(), "histogram"),
            };
            if empty {
                out.push_str(&format!(
                    "# HELP {0} {1}.\n# TYPE {0} {kind}\n",
                    d.name, d.help
                ));
            }
        }
        out
    }
}

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
