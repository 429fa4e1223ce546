//! What a stand-in saw: handshakes, requests, tickets.

use super::*;

/// One TLS ClientHello the stand-in saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHandshake {
    /// Peer address.
    pub peer: String,
    /// SNI sent by the client, if any.
    pub sni: Option<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// Whether the SNI matched the stand-in's name.
    pub sni_ok: bool,
    /// Whether the TLS handshake completed.
    pub completed: bool,
    /// Why it did not complete.
    pub error: Option<String>,
}

/// One HTTP request the stand-in received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Request number on this stand-in (0-based; keeps counting across
    /// [`Standin::clear_log`]).
    pub id: u64,
    /// Peer address.
    pub peer: String,
    /// Came over TLS.
    pub tls: bool,
    /// SNI of the TLS connection.
    pub sni: Option<String>,
    /// Method.
    pub method: String,
    /// Request target as sent (path and query).
    pub path: String,
    /// `Host` header.
    pub host: Option<String>,
    /// All headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Subprotocols the client offered, in order.
    pub offered_protocols: Vec<String>,
    /// Subprotocol chosen, if any.
    pub subprotocol: Option<String>,
    /// Ticket from the path, if the path was `/ticket/<t>`.
    pub ticket: Option<String>,
    /// Whether the ticket was valid and consumed by this request.
    pub ticket_accepted: bool,
    /// Status answered; `None` if never answered.
    pub status: Option<u16>,
    /// Push frames sent in this session.
    pub frames_pushed: u64,
    /// Client data frames echoed in this session.
    pub frames_echoed: u64,
    /// Client payload bytes received in this session.
    pub bytes_from_client: u64,
    /// How the session (or unanswered request) ended; `None` while running.
    pub end: Option<String>,
    /// Bridged sessions: VMware client messages from the client, by
    /// subtype (`webmks.rs`), and how many were translated for the VNC
    /// server (the rest were dropped).
    #[serde(default)]
    pub vmware_messages: std::collections::BTreeMap<u8, u64>,
    #[serde(default)]
    pub vmware_translated: u64,
    /// `uint8utf8` sessions: the `.vmx` path the client named in Cloud
    /// Director's console-proxy handshake.
    #[serde(default)]
    pub vmx_path: Option<String>,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// State of a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketState {
    /// Issued, not used yet.
    Issued,
    /// Used by a WebSocket session.
    Used,
}

/// What the binary prints when ready and the control API's `GET /info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandinInfo {
    /// Host name.
    pub name: String,
    /// Listen address.
    pub addr: String,
    /// Listen port.
    pub port: u16,
    /// Control API port (0 if none).
    pub control_port: u16,
    /// `wss` or `ws`.
    pub scheme: String,
    /// SHA-256 of the certificate, lowercase hex.
    pub cert_sha256: String,
    /// SHA-256 of the certificate, uppercase hex with colons.
    pub cert_sha256_colon: String,
    /// Where the certificate PEM was written, if asked.
    pub cert_pem_path: Option<String>,
}
