//! `GET /metrics`: Prometheus text format (`prometheus-client`). The media leg's metrics
//! (`callsight_media_…`: stage latency histograms, per-track frame outcomes, its
//! counters) plus the signaling side's: WebSocket connections open and messages in/out.
//! Shown to the same callers as `/healthz`'s details (local, or with the health key).

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which way a WebSocket message went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&if *self == Direction::In { "in" } else { "out" }, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: Direction,
}

pub struct ServerMetrics {
    registry: Registry,
    ws_connections: Gauge,
    ws_messages: Family<DirectionLabel, Counter>,
}

impl ServerMetrics {
    pub fn new(media: Option<&callsight_media::MediaHub>, cluster: Option<&crate::cluster::Cluster>) -> Self {
        let mut registry = Registry::default();
        let ws_connections = Gauge::default();
        let ws_messages = Family::<DirectionLabel, Counter>::default();
        let sub = registry.sub_registry_with_prefix("callsight");
        sub.register("ws_connections", "WebSocket connections open", ws_connections.clone());
        sub.register("ws_messages", "WebSocket text messages received (in) and sent (out)", ws_messages.clone());
        if let Some(hub) = media {
            hub.metrics().register(&mut registry);
        }
        if let Some(cluster) = cluster {
            cluster.register(&mut registry);
        }
        ServerMetrics { registry, ws_connections, ws_messages }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn ws_message(&self, direction: Direction) {
        self.ws_messages.get_or_create(&DirectionLabel { direction }).inc();
    }

    /// Counts a connection for as long as the returned guard lives.
    pub fn ws_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.ws_connections.inc();
        ConnectionGuard(self.clone())
    }
}

pub struct ConnectionGuard(Arc<ServerMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.ws_connections.dec();
    }
}
