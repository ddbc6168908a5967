//! The seam between the I/O task ([`super::io`]) and the wire: a [`Transport`] owns the
//! byte stream, its security layer and its framing; the task owns everything that is
//! the same for every kind of peer connection (the outbox and its bound, the read
//! shaper, parking the parser when idle, handing events to the actors).
//!
//! The task is generic over the transport (static dispatch): the hot path costs what it
//! cost when TCP was wired in.

use std::future::Future;
use xmppd_proto::net::tls::ChannelBinding;
use xmppd_proto::stream::error::StreamError;
use xmppd_proto::xml::stream_parser::StreamEvent;

/// Bytes read from a socket at once, into a buffer shared by every connection of the
/// thread: an idle connection holds no read buffer.
pub const READ_CHUNK: usize = 32 * 1024;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

/// Run `f` on the thread's read buffer ([`READ_CHUNK`] bytes).
pub fn with_read_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|buf| f(&mut buf.borrow_mut()))
}

/// What one read produced.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Bytes taken from the wire (the read shaper counts them).
    pub wire_bytes: usize,
    /// XML bytes those carried, after TLS (the traffic metrics count them, as the
    /// writer counts the XML it frames).
    pub xml_bytes: usize,
    /// Stream events, in order: the header (or its framing's equivalent), stanzas, the end.
    pub events: Vec<StreamEvent>,
    /// The peer's data broke the stream's rules: the events before it are still valid.
    pub error: Option<StreamError>,
    /// The peer closed (TCP EOF, TLS close_notify, ...).
    pub closed: bool,
    /// The data ended between stanzas, so the parser may be parked if nothing follows.
    pub clean: bool,
}

/// Why a transport gave up; the text ends up in the connection's `Closed` reason.
pub type Reason = String;

/// One peer connection's wire: readiness, reading and unframing, framing and writing,
/// the TLS upgrade, parser reset and parking, and closing.
///
/// `TcpTransport` ([`super::tcp`]) is XMPP over TCP (RFC 6120): one XML stream on the
/// byte stream, STARTTLS or direct TLS. A WebSocket transport (RFC 7395) would
/// implement it like this, without the negotiation knowing:
/// - [`open`](Transport::open): the HTTP/1.1 Upgrade handshake (checking the `xmpp`
///   subprotocol), after the TLS handshake for `wss`; returns the channel binding then.
/// - [`readable`](Transport::readable): the socket's readiness, as for TCP.
/// - [`read`](Transport::read): read, decrypt, unmask and reassemble frames; each
///   complete text message is one element, given to a parser of its own (the stream
///   parser's limits apply per message): `<open/>` becomes `StreamEvent::Header`,
///   `<close/>` becomes `StreamEvent::End`, anything else a stanza with the `jabber:client`
///   namespace the header would have declared. `clean` is "at a message boundary".
///   Control frames are handled here; a pong would be left pending for the next
///   flush (the task would then need to flush after a read that left output pending,
///   which TCP never does).
/// - [`frame`](Transport::frame): one unframed WebSocket text frame per call (the
///   actors write one element per call; the stream header from negotiation becomes
///   `<open/>` and `</stream:stream>` becomes `<close/>`, the only places where the
///   transport looks into the bytes).
/// - [`has_output`](Transport::has_output), [`flush`](Transport::flush): seal (for `wss`) and write, as for TCP.
/// - [`start_tls`](Transport::start_tls): refuse (RFC 7395 §3.7: TLS is the
///   WebSocket's own); negotiation never offers STARTTLS on a secure stream.
/// - [`reset`](Transport::reset): forget any partial message (a new `<open/>` follows).
/// - [`park`](Transport::park): drop the message parser and reassembly buffer when empty.
/// - [`close`](Transport::close): a Close frame (status 1000), TLS close_notify, TCP
///   shutdown.
pub trait Transport: 'static {
    /// Make the transport ready for the stream (TCP: the handshake of direct TLS);
    /// `Some` when TLS came up here.
    fn open(&mut self) -> impl Future<Output = Result<Option<ChannelBinding>, Reason>>;

    /// Wait until the peer has sent something. Cancel-safe: nothing is consumed.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>>;

    /// Read at most `max` bytes from the wire without waiting, decrypt and unframe
    /// them, and parse them into stream events. `Ok(None)`: the readiness was spurious.
    fn read(&mut self, max: usize, log: &slog::Logger) -> std::io::Result<Option<ReadOutcome>>;

    /// Frame one unit the actors wrote (an element, or the stream header or closing
    /// tag) into the pending output.
    fn frame(&mut self, data: Vec<u8>);

    /// Whether framed output waits to be flushed.
    fn has_output(&self) -> bool;

    /// Seal and write everything pending; nothing is pending after `Ok`.
    fn flush(&mut self, log: &slog::Logger) -> impl Future<Output = std::io::Result<()>>;

    /// Write what the transport produced on its own while reading (TLS: a KeyUpdate
    /// answered, an alert before closing; WebSocket: a pong), ahead of anything framed
    /// later.
    fn write_control(&mut self) -> impl Future<Output = std::io::Result<()>>;

    /// Upgrade to TLS in place, after a flush (STARTTLS); the stream parser starts over.
    /// A transport without STARTTLS refuses with the reason.
    fn start_tls(&mut self) -> impl Future<Output = Result<ChannelBinding, Reason>>;

    /// The peer opens a new stream (after SASL success): start parsing afresh.
    fn reset(&mut self);

    /// The stream has been quiet between stanzas: shed the parser's memory (it is
    /// rebuilt when data comes again).
    fn park(&mut self);

    /// Close the wire after a flush: tell the peer (TLS close_notify, ...), shut down,
    /// and give the peer a moment to close its side.
    fn close(&mut self) -> impl Future<Output = ()>;
}
