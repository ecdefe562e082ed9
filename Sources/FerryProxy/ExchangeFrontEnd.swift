import FerryConfig
import NIOCore
import NIOHTTP1

/// What an `Exchange` asks of the side the client speaks: one implementation per client protocol
/// (an HTTP/1 connection, later an HTTP/2 stream). The exchange decides *what* the client gets
/// (status, headers, body bytes, when it ends); the front end decides *how* it goes on the wire
/// (framing, keep-alive, `Connection: close`, flushing) and owns the client's reads and deadlines.
///
/// Calls come on the front end's event loop, in order; after `exchangeFinished` or
/// `abortResponse`, none come for that exchange.
protocol ExchangeFrontEnd: AnyObject {
    /// The request was accepted (routed, within limits) and announced `Expect: 100-continue`: the
    /// client may send its body now.
    func sendContinue()

    /// A response Ferry makes itself (an error, a redirect, a fixed answer), whole. `close`: the
    /// client should not send another request on this connection (a protocol front end without
    /// connections ignores it).
    func sendLocalResponse(status: HTTPResponseStatus, headers: HTTPHeaders, body: String, close: Bool)

    /// A backend's complete answer that is not relayed as it comes (a refused WebSocket upgrade):
    /// its headers as the backend sent them (hop-by-hop ones removed by the front end) and its body.
    func sendBufferedResponse(_ head: HTTPResponseHead, body: ByteBuffer)

    /// The head of a response relayed from a backend, with `extraHeader` added (the backend's
    /// sticky cookie). Returns true when the front end takes a chunked body with the backend's
    /// chunk framing as it is (it sends chunks too), false for payload bytes only.
    func sendResponseHead(_ head: UpstreamResponseHead, extraHeader: (name: String, value: String)?) -> Bool

    /// Body bytes of the relayed response: chunk-framed as the backend sent them when
    /// `sendResponseHead` asked for that, else payload.
    func sendResponseBody(_ body: ByteBuffer)

    /// The end of a read burst from the backend: a good moment to flush.
    func flushResponse()

    /// The response is complete and accounted (stats, access log): the front end ends it on the
    /// wire and may start on the next request.
    func exchangeFinished(_ exchange: Exchange)

    /// Part of the response went out and the rest never will (the backend failed mid-response):
    /// the client must see it cut, not a forged end.
    func abortResponse()

    /// Request-body backpressure: stop (or resume) reading from the client.
    func setRequestBodyPaused(_ paused: Bool)

    /// The backend must start its response within `duration` (`Exchange.responseDeadlinePassed`
    /// is called if it does not); `nil` disarms it.
    func setResponseDeadline(_ duration: Duration?)

    /// The status the client sees when its WebSocket is in place: 101 over HTTP/1, 200 over an
    /// HTTP/2 stream (RFC 8441 §5). Stats and the access log report it.
    var tunnelStatus: Int { get }

    /// The backend agreed to a WebSocket upgrade: from now the client's and the backend's bytes
    /// are relayed as they are. `tunnel` carries the accounting for when the tunnel ends.
    func startTunnel(response: HTTPResponseHead, upstream: any Channel, tunnel: TunnelRecord)
}

/// Who the client is, as the front end knows it when a request starts.
struct ClientInfo {
    /// The peer's address (or the one the balancer named in a PROXY protocol header).
    var address: String?
    var tls: Bool
    /// The name the client sent in SNI, normalized.
    var serverName: String?
    /// The listener's certificates when it has several (the 421 rule).
    var certificates: CertificateSelector?
    /// A `redirect_to_https` listener: every request is answered with 308 to this HTTPS port.
    var redirectToHTTPSPort: Int?
}

/// A WebSocket tunnel's bookkeeping, handed from the exchange that opened it to the front end
/// that splices it.
struct TunnelRecord {
    let backend: String
    let server: Int
    let routeIndex: Int?
    let routeVersion: Int
    let routePath: String?
    /// Called once when the tunnel ends (the server's tunnel count).
    let closed: () -> Void
}
