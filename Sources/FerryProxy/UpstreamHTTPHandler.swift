import FerryConfig
import NIOCore
import NIOHTTP1

/// The one handler of a pooled upstream connection's pipeline: it writes its exchange's request as
/// bytes (`sendHead`, `sendBody`, `sendEnd`) and reads the response as bytes. The response head is
/// parsed in place (`HTTP1HeadParser`, no `String` per header); the body is relayed as it comes
/// while a `BodyFramingTracker` finds its end — with its chunked framing as it is when the client
/// gets chunks too, else as payload — so no body is decoded and re-encoded.
final class UpstreamHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        /// Leased: the response goes to the delegate.
        case exchanging
        /// The response ended in this read burst; released at channelReadComplete.
        case ending
        /// In the pool: anything that arrives is unexpected.
        case idle
        /// Closed by the pool; nothing more is reported.
        case retired
    }

    /// Where the response being read is.
    private enum Reading {
        /// Its head (or a 1xx before it) has not been read whole; `searchedUpTo`: how far the
        /// end-of-head search got in `pending`, so that a head in many reads is scanned once.
        case head(searchedUpTo: Int)
        case body(BodyFramingTracker, relayFraming: Bool)
    }

    /// Response heads larger than this are refused (NIO's decoder's default).
    static let limits = HTTP1HeadParser.Limits(maxHeadBytes: 80 * 1024, maxFields: 1000)

    // Neither reference is weak: a weak reference gives its target a side table, and every
    // retain and release of it (the Exchange is retained several times per request) then takes
    // the runtime's slow path (`perf`: ~3% of the worker's user time with `swift_weakLoadStrong`).
    // The pool outlives its connections; the delegate is cleared whenever an exchange ends
    // (finished, failed, client gone), which breaks the cycle Exchange → connection → handler.
    private let pool: HTTPConnectionPool?
    private(set) var state: State = .idle
    var delegate: (any UpstreamExchangeDelegate)?
    private(set) var outcome = ExchangeOutcome()
    private var responseStarted = false
    private var isHEAD = false
    /// The request's body is re-chunked on the way out.
    private var chunkedBody = false
    /// The request's last byte has been handed to the channel (`sendEnd`).
    private var endWritten = false
    private var reading = Reading.head(searchedUpTo: 0)
    /// Bytes read but not used yet: a head not complete, or a chunk-size line cut by a read.
    private var pending: ByteBuffer?
    private var context: ChannelHandlerContext?
    /// Strong while the connection is alive (leased or idle); cleared when the pool retires it,
    /// which breaks the cycle connection → handler → connection.
    var connection: UpstreamConnection?

    init(pool: HTTPConnectionPool) {
        self.pool = pool
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        pool?.openConnections += 1
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pool?.openConnections -= 1
        self.context = nil
    }

    func beginExchange(requestsServed: Int) {
        // Only the seed's model (`ReusePolicy.unconditionalForTesting`) leases a connection whose
        // response is still coming: that response then goes on being read, for the new exchange.
        let busy = if case .exchanging = state { true } else { false }
        state = .exchanging
        outcome = ExchangeOutcome()
        outcome.requestsServed = requestsServed
        responseStarted = false
        endWritten = false
        if !busy { reading = .head(searchedUpTo: 0) }
    }

    func becomeIdle() {
        state = .idle
        delegate = nil
    }

    func retire() {
        state = .retired
        delegate = nil
        connection = nil
    }

    func markTimedOut() {
        outcome.timedOut = true
    }

    // MARK: - Writing the request

    /// The request line and headers; `head` has them already framed (`RequestRules.writeUpstreamRequest`).
    func sendHead(_ head: ByteBuffer, method: HTTPMethod, framing: RequestRules.UpstreamBodyFraming) {
        guard let context else { return }
        isHEAD = method == .HEAD
        chunkedBody = framing == .chunked
        context.write(wrapOutboundOut(head), promise: nil)
        if var stray = pending, case .head = reading {
            // Bytes that followed the previous response. Only the seed's model reuses such a
            // connection (a strict pool closes it: `ExchangeOutcome.unexpectedData`); there, they
            // are read as this request's response, which is the cross-talk the hazard test catches.
            pending = nil
            do { try read(&stray) } catch { fail(error) }
        }
    }

    func sendBody(_ body: ByteBuffer) {
        guard let context, body.readableBytes > 0 else { return }
        if chunkedBody {
            var framed = context.channel.allocator.buffer(capacity: body.readableBytes + 12)
            ResponseFramer.writeChunkHeader(size: body.readableBytes, into: &framed)
            var body = body
            framed.writeBuffer(&body)
            framed.writeStaticString("\r\n")
            context.write(wrapOutboundOut(framed), promise: nil)
        } else {
            context.write(wrapOutboundOut(body), promise: nil)
        }
    }

    /// The end of the request (the last chunk when chunked), flushed.
    func sendEnd() {
        guard let context else { return }
        if chunkedBody {
            context.write(wrapOutboundOut(ByteBuffer(staticString: "0\r\n\r\n")), promise: nil)
        }
        endWritten = true
        context.flush()
    }

    func flush() {
        context?.flush()
    }

    /// Whether all of the request has left for the backend: written, and no byte of it still
    /// waiting in the channel (a backend that answers before reading the whole request must not
    /// get the rest as its next request).
    private var requestFullySent: Bool {
        guard endWritten, let context else { return false }
        return (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0
    }

    // MARK: - Reading the response

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch state {
        case .exchanging:
            if var earlier = pending {
                pending = nil
                earlier.writeBuffer(&bytes)
                bytes = earlier
            }
            do {
                try read(&bytes)
            } catch {
                fail(error)
            }
        case .ending:
            // A second response (or anything) behind the first: this connection is not in sync.
            keepStray(bytes)
        case .idle:
            if let connection, let pool { pool.discard(connection, reason: .unexpectedData) }
        case .retired:
            break
        }
    }

    /// Takes what it can of `bytes` (head, then body); keeps in `pending` what must wait for more.
    private func read(_ bytes: inout ByteBuffer) throws {
        while bytes.readableBytes > 0, case .exchanging = state {
            switch reading {
            case .head(let searchedUpTo):
                guard try readHead(&bytes, searchedUpTo: searchedUpTo) else { return }
            case .body(var tracker, let relayFraming):
                var dataRanges: [Range<Int>] = []
                let step = try bytes.withUnsafeReadableBytes { raw in
                    try tracker.consume(raw) { range in if !relayFraming { dataRanges.append(range) } }
                }
                reading = .body(tracker, relayFraming: relayFraming)
                if relayFraming || tracker.framing != .chunked {
                    if step.relayEnd > 0, let slice = bytes.getSlice(at: bytes.readerIndex, length: step.relayEnd) {
                        delegate?.upstream(receivedBody: slice)
                    }
                } else {
                    for range in dataRanges {
                        if let slice = bytes.getSlice(at: bytes.readerIndex + range.lowerBound, length: range.count) {
                            delegate?.upstream(receivedBody: slice)
                        }
                    }
                }
                bytes.moveReaderIndex(forwardBy: step.consumed)
                if step.ended {
                    responseEnded()
                    keepStray(bytes)
                    return
                }
                if bytes.readableBytes > 0 {
                    // A chunk-size line cut by this read: it is read again with the next bytes.
                    pending = bytes
                    return
                }
            }
        }
    }

    /// Reads a response head off the front of `bytes`. Returns false when more bytes are needed
    /// (they are kept in `pending`).
    private func readHead(_ bytes: inout ByteBuffer, searchedUpTo: Int) throws -> Bool {
        // A head ends with an empty line: the parser runs once one is there, not on every read.
        let found = bytes.withUnsafeReadableBytes { raw in
            HTTP1HeadParser.endOfHead(raw, from: max(0, searchedUpTo - 3))
        }
        guard found != nil else {
            guard bytes.readableBytes <= Self.limits.maxHeadBytes else {
                throw ProxyError.invalidResponse("response head too large")
            }
            reading = .head(searchedUpTo: bytes.readableBytes)
            pending = bytes
            return false
        }
        switch HTTP1HeadParser.parseResponse(bytes, limits: Self.limits) {
        case .incomplete:
            // Empty lines before the status line ended the search early; look further.
            reading = .head(searchedUpTo: (found ?? 0) + 4)
            return try readHead(&bytes, searchedUpTo: (found ?? 0) + 4)
        case .invalid(let error):
            throw ProxyError.invalidResponse("\(error.reason)")
        case .complete(let head, let headLength):
            let headBytes = bytes.readSlice(length: headLength)!
            if head.status >= 100 && head.status < 200 && head.status != 101 {
                // Informational (100 Continue, 103 Early Hints): not relayed; the final one follows.
                reading = .head(searchedUpTo: 0)
                return true
            }
            let response: UpstreamResponseHead
            do {
                response = try UpstreamResponseHead(bytes: headBytes, head: head)
            } catch {
                throw ProxyError.invalidResponse("\(error.reason)")
            }
            responseStarted = true
            outcome.status = head.status
            outcome.backendKeepAlive = response.keepAlive
            let framing = response.framing(requestIsHEAD: isHEAD)
            outcome.responseDelimitedByClose = framing == .untilClose
            let relayFraming = delegate?.upstream(receivedHead: response) ?? false
            let tracker = BodyFramingTracker(framing)
            reading = .body(tracker, relayFraming: relayFraming && framing == .chunked)
            if tracker.isComplete || head.status == 101 {
                responseEnded()
                keepStray(bytes)
                return false
            }
            return true
        }
    }

    /// Bytes after the response's end: the connection is out of step (`unexpectedData`). They
    /// are kept, as a decoder would keep them, for what reads the connection next.
    private func keepStray(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        outcome.unexpectedData = true
        if var earlier = pending {
            var bytes = bytes
            earlier.writeBuffer(&bytes)
            pending = earlier
        } else {
            pending = bytes
        }
    }

    private func responseEnded() {
        outcome.responseComplete = true
        outcome.requestFullySent = requestFullySent
        state = .ending
        delegate?.upstreamResponseEnded()
    }

    private func fail(_ error: any Error) {
        guard case .exchanging = state else { return }
        state = .retired
        outcome.failed = true
        let delegate = self.delegate
        self.delegate = nil
        if let connection, let pool { pool.close(connection, reason: .error) }
        delegate?.upstream(failed: error, responseStarted: responseStarted)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        case .exchanging:
            delegate?.upstreamReadComplete()
        case .ending:
            let delegate = self.delegate
            self.delegate = nil
            state = .retired
            if let connection, let pool { pool.finished(connection, outcome: outcome) }
            delegate?.upstreamExchangeFinished()
        case .idle, .retired:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .exchanging = state, case .body(let tracker, _) = reading, tracker.framing == .untilClose,
            pending == nil
        {
            // The end of a response delimited by the connection's end.
            responseEnded()
        }
        switch state {
        case .exchanging:
            state = .retired
            outcome.failed = true
            let delegate = self.delegate
            self.delegate = nil
            // Closed in the middle of a response (its head or its body) is an error; before any
            // byte of it, the backend closed the connection.
            let cut = responseStarted || pending != nil
            if let connection, let pool { pool.close(connection, reason: cut ? .error : .backendClose) }
            delegate?.upstream(failed: ChannelError.eof, responseStarted: responseStarted)
        case .ending:
            // The response was complete; the backend closed right after (Connection: close).
            state = .retired
            let delegate = self.delegate
            self.delegate = nil
            if let connection, let pool { pool.close(connection, reason: .backendClose) }
            delegate?.upstreamExchangeFinished()
        case .idle:
            if let connection, let pool { pool.discard(connection, reason: .backendClose) }
        case .retired:
            break
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .ending:
            // The response was complete; whatever followed it is garbage.
            state = .retired
            outcome.unexpectedData = true
            let delegate = self.delegate
            self.delegate = nil
            if let connection, let pool { pool.close(connection, reason: .unexpectedData) }
            delegate?.upstreamExchangeFinished()
        case .exchanging:
            fail(error)
        case .idle:
            if let connection, let pool { pool.discard(connection, reason: .unexpectedData) }
        case .retired:
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstream(writabilityChanged: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }
}

@available(*, unavailable)
extension UpstreamHTTPHandler: Sendable {}
