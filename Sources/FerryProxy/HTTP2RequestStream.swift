import FerryConfig
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// One HTTP/2 request stream, driven by `HTTP2Connection` from the connection's frames: its
/// request becomes an `Exchange` (through the same `ExchangeFrontEnd` interface as an HTTP/1
/// request) and the response goes back as HEADERS and DATA written on the connection.
///
/// A plain object, not a channel: swift-nio-http2's child channel per stream (its own pipeline,
/// promises, activation and teardown) cost more than half of the library's time per request
/// (docs/decisions.md, "HTTP/2 streams without child channels"). What the child channel did for a
/// stream is done here: the stream's receive window (WINDOW_UPDATE as the request body is taken,
/// none while the exchange pauses it), the response's backpressure (bytes handed to
/// `NIOHTTP2Handler` and not yet written: above `highWatermark` the backend is paused), and the
/// send timeout of a client that keeps its window shut. Extended CONNECT streams (WebSockets,
/// RFC 8441) keep a child channel (`HTTP2StreamFrontEnd`): their bytes are spliced as channels.
final class HTTP2RequestStream: ExchangeFrontEnd, HTTP2ResponseWriter, HTTP2StreamDeadlines {
    let id: HTTP2StreamID
    private let connection: HTTP2Connection
    private var loop: ProxyLoopState { connection.loop }
    private var exchange: Exchange?
    /// The request's HEADERS came; later HEADERS are trailers.
    private var headersReceived = false
    /// The response's END_STREAM went out (or the stream was reset).
    private var responseEnded = false
    /// The client's END_STREAM came (or the stream was reset).
    private var requestEnded = false
    /// swift-nio-http2 closed the stream: nothing more is written.
    private var closed = false
    var responseBodyless = false
    var isExtendedConnect: Bool { false }

    /// When the backend's response must have started (`setResponseDeadline`).
    private var responseDeadline: NIODeadline?

    /// Response bytes handed to `NIOHTTP2Handler` whose writes have not completed: they wait for
    /// the client's flow-control window or the socket.
    private var unsentBytes = 0
    private var unsentWrites = 0
    private var clientWritable = true
    /// When a write last completed (or the first one waiting was made): the send timeout's start.
    private var lastProgress = NIODeadline.uptimeNanoseconds(0)
    static let highWatermark = 64 * 1024
    static let lowWatermark = 16 * 1024

    /// The stream's receive window as the client sees it, and whether the exchange paused the body.
    private var receiveWindow = HTTP2RequestStream.targetWindow
    private var readsPaused = false
    /// The receive window Ferry keeps open per stream: HTTP/2's initial one (Ferry's SETTINGS
    /// leave SETTINGS_INITIAL_WINDOW_SIZE at its default).
    static let targetWindow = 65_535

    init(id: HTTP2StreamID, connection: HTTP2Connection) {
        self.id = id
        self.connection = connection
    }

    // MARK: - From the connection

    func received(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers):
            if headers.endStream { requestEnded = true }
            if headersReceived {
                // Trailers end the request; they are not forwarded (the backend's body is chunked
                // without trailers).
                if headers.endStream { exchange?.receivedEnd() }
                return
            }
            headersReceived = true
            start(headers.headers, endStream: headers.endStream)
        case .data(let data):
            if data.endStream { requestEnded = true }
            if case .byteBuffer(let buffer) = data.data, buffer.readableBytes > 0 {
                exchange?.receivedBody(buffer)
            }
            if data.endStream { exchange?.receivedEnd() }
        default:
            // RST_STREAM is followed by swift-nio-http2's stream-closed event; WINDOW_UPDATE and
            // PRIORITY are the handler's business.
            break
        }
    }

    /// The client's receive window for this stream after swift-nio-http2 counted a DATA frame.
    func receiveWindowChanged(_ size: Int) {
        receiveWindow = size
        openReceiveWindow()
    }

    /// Gives the client its window back once half of it is used, unless the body is paused (the
    /// client then stops after at most one window: the bound on a paused body's buffering).
    private func openReceiveWindow() {
        guard !readsPaused, !requestEnded, !closed, receiveWindow <= Self.targetWindow / 2 else { return }
        let increment = Self.targetWindow - receiveWindow
        receiveWindow = Self.targetWindow
        connection.write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)))
        connection.flush()
    }

    /// swift-nio-http2 closed the stream: both ends were sent (`reset` nil: the exchange may
    /// still be accounting its backend's end), or a reset either way, or the connection went.
    func streamClosed(reset: Bool) {
        guard !closed else { return }
        closed = true
        let complete = responseEnded && !reset
        responseEnded = true
        requestEnded = true
        guard !complete else { return }
        responseDeadline = nil
        // A reset by the client, or the connection going away: nobody reads the response.
        exchange?.clientGone()
        exchange = nil
    }

    private func start(_ block: HPACKHeaders, endStream: Bool) {
        guard let current = makeExchange(block, endStream: endStream, connection: connection) else {
            endRequestEarly()
            connection.flush()
            return
        }
        exchange = current
        if current.refuseIfInvalid() { return }
        current.start()
        if endStream { exchange?.receivedEnd() }
    }

    // MARK: - Writing

    func writeHeaders(_ headers: HPACKHeaders, endStream: Bool) {
        guard !responseEnded else { return }
        releaseHeldData()
        if endStream { responseEnded = true }
        connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: endStream))))
    }

    /// The last body chunk, kept until the next one, the read burst's flush or the response's end:
    /// a response that fits one read then ends with its last DATA frame instead of an empty one
    /// after it (one frame, one promise less per small response).
    private var heldData: ByteBuffer?

    func writeData(_ buffer: ByteBuffer, endStream: Bool) {
        guard !responseEnded else { return }
        if let held = heldData {
            heldData = nil
            if endStream && buffer.readableBytes == 0 {
                emitData(held, endStream: true)
                return
            }
            emitData(held, endStream: false)
        }
        if endStream {
            emitData(buffer, endStream: true)
        } else {
            heldData = buffer
        }
    }

    private func releaseHeldData() {
        guard let held = heldData else { return }
        heldData = nil
        emitData(held, endStream: false)
    }

    private func emitData(_ buffer: ByteBuffer, endStream: Bool) {
        guard let written = connection.makePromise() else { return }
        if endStream { responseEnded = true }
        let count = buffer.readableBytes
        unsentBytes += count
        unsentWrites += 1
        if unsentWrites == 1 { lastProgress = .now() }
        written.futureResult.assumeIsolated().whenComplete { _ in self.dataWritten(count) }
        connection.write(
            HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(buffer), endStream: endStream))),
            promise: written)
        if clientWritable && unsentBytes > Self.highWatermark {
            clientWritable = false
            exchange?.clientWritabilityChanged(writable: false)
        }
    }

    private func dataWritten(_ count: Int) {
        unsentBytes -= count
        unsentWrites -= 1
        lastProgress = .now()
        if !clientWritable && unsentBytes <= Self.lowWatermark {
            clientWritable = true
            exchange?.clientWritabilityChanged(writable: true)
        }
    }

    func flushResponse() {
        releaseHeldData()
        connection.flush()
    }

    // MARK: - Deadlines

    /// The earliest of the response deadline and, while response bytes wait, the send timeout: a
    /// response that makes no progress for `[http2] send_timeout` because the client keeps its
    /// flow-control window shut (it stopped reading, or never opens it: a zero-window stall) is
    /// reset and its backend connection closed. As nginx's `send_timeout`: the time between two
    /// writes completing, not the whole response's.
    var streamDeadline: NIODeadline? {
        var earliest = responseDeadline
        if unsentWrites > 0 {
            let stall = lastProgress + loop.configuration.http2.sendTimeout.timeAmount
            if earliest.map({ stall < $0 }) ?? true { earliest = stall }
        }
        return earliest
    }

    func streamDeadlinePassed(now: NIODeadline) {
        if let due = responseDeadline, due <= now {
            responseDeadline = nil
            exchange?.responseDeadlinePassed()
        }
        if unsentWrites > 0, lastProgress + loop.configuration.http2.sendTimeout.timeAmount <= now, !closed {
            loop.http2Refused["zero_window", default: 0] += 1
            exchange?.clientGone()
            exchange = nil
            reset(.cancel)
        }
    }

    /// RST_STREAM: the stream is over on Ferry's word (swift-nio-http2's closed event that follows
    /// finds nothing left to do; a second sweep cannot count the stall again).
    private func reset(_ code: HTTP2ErrorCode) {
        heldData = nil
        closed = true
        responseEnded = true
        requestEnded = true
        connection.write(HTTP2Frame(streamID: id, payload: .rstStream(code)))
        connection.flush()
    }

    // MARK: - ExchangeFrontEnd

    func exchangeFinished(_ exchange: Exchange) {
        self.exchange = nil
        responseDeadline = nil
        if !responseEnded { writeData(ByteBuffer(), endStream: true) }
        endRequestEarly()
        connection.flush()
    }

    /// The response is complete but the client is still sending its body (an early answer: an
    /// error, a refusal): RST_STREAM with NO_ERROR tells it to stop (RFC 9113 §8.1) and the stream
    /// closes; its remaining DATA is not read.
    private func endRequestEarly() {
        guard !requestEnded, !closed else { return }
        requestEnded = true
        connection.write(HTTP2Frame(streamID: id, payload: .rstStream(.noError)))
    }

    func abortResponse() {
        exchange = nil
        guard !responseEnded, !closed else { return }
        reset(.internalError)
    }

    func setRequestBodyPaused(_ paused: Bool) {
        guard paused != readsPaused else { return }
        readsPaused = paused
        if !paused { openReceiveWindow() }
    }

    func setResponseDeadline(_ duration: Duration?) {
        responseDeadline = duration.map { .now() + $0.timeAmount }
    }

    func startTunnel(response: HTTPResponseHead, upstream: any Channel, tunnel: TunnelRecord) {
        // WebSockets over HTTP/2 come as extended CONNECT, which `HTTP2Connection` gives a stream
        // channel (`HTTP2StreamFrontEnd`); an Upgrade header is refused by `HTTP2HeaderValidation`
        // (a connection-specific field). Nothing else may open a tunnel here.
        upstream.close(promise: nil)
        tunnel.closed()
        abortResponse()
    }
}

@available(*, unavailable)
extension HTTP2RequestStream: Sendable {}
