public import NIOCore

/// Fired inbound once the handshake has completed, so later handlers can log what was negotiated.
public struct TLSHandshakeCompleted: Sendable, Equatable {
    public var protocolVersion: String
    public var alpn: String?
    public var serverName: String?
    public var resumed: Bool
}

/// Terminates (server) or originates (client) TLS on a channel, over memory BIOs.
///
/// Bytes in are ciphertext, bytes out are plaintext; it knows nothing of HTTP. The connection state
/// is one enum switched exhaustively. Writes issued before the handshake completes are buffered and
/// sent after it. Ciphertext is written straight to the channel after every OpenSSL call, so the
/// channel's own writability (not the memory BIO) is what applies backpressure.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    enum State {
        /// Added, channel not active yet.
        case idle
        case handshaking
        case active
        /// close_notify sent (or the connection failed); waiting for the flush to close.
        case closing
        case closed
    }

    private var state: State = .idle
    private let connection: TLSConnection
    private let counters: TLSCounters?
    private let handshakeTimeout: TimeAmount
    private var timeoutTask: Scheduled<Void>?
    /// Writes issued before the handshake finished.
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var pendingFlush = false
    /// Whether the peer sent anything at all (a connect-and-close probe sends nothing).
    private var receivedAny = false
    /// Plaintext produced during the current read burst is delivered before channelReadComplete.
    private var producedPlaintext = false
    /// Small application writes since the last flush, encrypted together at the flush so that a
    /// response's head, body and end become one TLS record instead of three.
    private var unflushed: ByteBuffer?
    private var unflushedPromises: [EventLoopPromise<Void>] = []
    private static let coalesceLimit = 16 * 1024
    /// The pending `trimBuffers` (see `scheduleTrim`).
    private var trimTask: Scheduled<Void>?
    /// Traffic since the pending trim was scheduled: the connection is busy, keep its buffers.
    private var activeSinceTrimCheck = false
    /// How long the memory BIOs may keep what a burst grew before they are given back.
    static let trimDelay = TimeAmount.milliseconds(50)

    /// - Parameters:
    ///   - context: a server or client `TLSContext`; the role decides who speaks first.
    ///   - handshakeTimeout: a peer that has not completed the handshake by then is disconnected.
    ///   - counters: where failures are counted (per worker).
    public init(context: TLSContext, handshakeTimeout: TimeAmount = .seconds(10), counters: TLSCounters? = nil) throws {
        self.connection = try TLSConnection(context: context)
        self.handshakeTimeout = handshakeTimeout
        self.counters = counters
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        state = .handshaking
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (handler, context) = bound.value
            guard case .handshaking = handler.state else { return }
            handler.fail(
                context: context, TLSError(code: .handshakeTimeout, message: "TLS handshake not completed in time"))
        }
        if !connection.context.isServer { advanceHandshake(context: context) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        trimTask?.cancel()
        trimTask = nil
        let wasHandshaking: Bool
        if case .handshaking = state { wasHandshaking = true } else { wasHandshaking = false }
        state = .closed
        failPendingWrites(ChannelError.ioOnClosedChannel)
        // Freed once the channel lets go of this handler; counted now, trimmed a tick later.
        counters?.recordReleased(bytes: TLSCounters.closedConnectionFootprint + connection.retainedBufferBytes)
        if wasHandshaking { counters?.record(failure: "handshake_eof") }
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        trimTask?.cancel()
        trimTask = nil
        failPendingWrites(ChannelError.ioOnClosedChannel)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if bytes.readableBytes > 0 { receivedAny = true }
        switch state {
        case .idle:
            // Data before channelActive cannot happen with real channels; treat it as a start.
            start(context: context)
            connection.receive(bytes)
            advanceHandshake(context: context)
        case .handshaking:
            connection.receive(bytes)
            advanceHandshake(context: context)
        case .active:
            connection.receive(bytes)
            readPlaintext(context: context)
        case .closing, .closed:
            // After close_notify or a failure nothing more is delivered.
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput(context: context)
        if producedPlaintext {
            producedPlaintext = false
            context.fireChannelReadComplete()
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // TCP EOF without close_notify: during the handshake it is a failure, after it a truncation.
            switch state {
            case .handshaking where !receivedAny, .idle where !receivedAny:
                // Connected and closed without a byte: a port probe or a load balancer's TCP health
                // check, not a TLS failure; counted apart so unexpected_eof keeps its meaning.
                counters?.record(failure: TLSCounters.closedBeforeClientHello)
                timeoutTask?.cancel()
                state = .closing
                context.close(promise: nil)
            case .handshaking, .idle:
                fail(context: context, TLSError(code: .unexpectedEOF, message: "peer closed during the TLS handshake"))
            case .active:
                counters?.record(failure: "eof_without_close_notify")
                context.fireUserInboundEventTriggered(event)
            case .closing, .closed:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            pendingWrites.append((buffer, promise))
        case .active:
            if buffer.readableBytes + (unflushed?.readableBytes ?? 0) <= Self.coalesceLimit {
                var buffer = buffer
                if unflushed == nil {
                    unflushed = buffer
                } else {
                    unflushed!.writeBuffer(&buffer)
                }
                if let promise { unflushedPromises.append(promise) }
            } else {
                encryptUnflushed(context: context)
                encrypt(context: context, buffer, promise: promise)
            }
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    private func encryptUnflushed(context: ChannelHandlerContext) {
        guard let buffer = unflushed else { return }
        unflushed = nil
        let promises = unflushedPromises
        unflushedPromises = []
        var combined: EventLoopPromise<Void>?
        if !promises.isEmpty {
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenComplete { result in
                for waiting in promises { waiting.completeWith(result) }
            }
            combined = promise
        }
        encrypt(context: context, buffer, promise: combined)
    }

    public func flush(context: ChannelHandlerContext) {
        switch state {
        case .idle, .handshaking:
            pendingFlush = true
        case .active, .closing:
            encryptUnflushed(context: context)
            context.flush()
        case .closed:
            break
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if case .active = state { encryptUnflushed(context: context) }
        switch (state, mode) {
        case (.active, .all), (.active, .output):
            // Send close_notify first; a server does not wait for the peer's (as nginx does not).
            state = mode == .all ? .closing : .active
            connection.shutdown()
            let output = connection.takeOutput(allocator: context.channel.allocator)
            if let output {
                context.writeAndFlush(wrapOutboundOut(output)).assumeIsolated().whenComplete { _ in
                    context.close(mode: mode, promise: promise)
                }
            } else {
                context.close(mode: mode, promise: promise)
            }
        case (.idle, _), (.handshaking, _), (.closing, _), (.active, .input):
            if mode == .all { state = .closing }
            context.close(mode: mode, promise: promise)
        case (.closed, _):
            context.close(mode: mode, promise: promise)
        }
    }

    // MARK: - Driving OpenSSL

    private func advanceHandshake(context: ChannelHandlerContext) {
        switch connection.handshake() {
        case .incomplete:
            flushOutput(context: context)
        case .failed(let error):
            fail(context: context, error)
        case .complete:
            timeoutTask?.cancel()
            timeoutTask = nil
            state = .active
            counters?.recordHandshake(resumed: connection.sessionReused)
            flushOutput(context: context)
            context.fireUserInboundEventTriggered(
                TLSHandshakeCompleted(
                    protocolVersion: connection.protocolVersion, alpn: connection.negotiatedALPN,
                    serverName: connection.serverName, resumed: connection.sessionReused))
            // The handler may have been removed or closed by the event's receivers.
            guard case .active = state else { return }
            let writes = pendingWrites
            pendingWrites = []
            for (buffer, promise) in writes { encrypt(context: context, buffer, promise: promise) }
            if pendingFlush || !writes.isEmpty {
                pendingFlush = false
                context.flush()
            }
            // Finished and the first application data can arrive in one read.
            readPlaintext(context: context)
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        while case .active = state {
            // Sized to what can come out now (at most one 16 KiB record's worth per read). With
            // nothing buffered there is nothing to read: no buffer for SSL_read to refuse.
            if !connection.mayHaveInput {
                flushOutput(context: context)
                scheduleTrim(context: context)
                return
            }
            let capacity = min(16384, max(64, connection.readableBound))
            var buffer = context.channel.allocator.buffer(capacity: capacity)
            switch connection.read(into: &buffer) {
            case .data:
                producedPlaintext = true
                context.fireChannelRead(wrapInboundOut(buffer))
            case .wouldBlock:
                flushOutput(context: context)
                // Everything received is consumed: give back BIO buffers the handshake or a burst grew.
                scheduleTrim(context: context)
                return
            case .closed:
                // close_notify from the peer: answer with ours and close.
                flushOutput(context: context)
                close(context: context, mode: .all, promise: nil)
                return
            case .failed(let error):
                fail(context: context, error)
                return
            }
        }
    }

    /// What the connection's memory BIOs keep allocated (for tests).
    var retainedBufferBytes: Int { connection.retainedBufferBytes }

    /// Gives back the BIO buffers a burst grew once the connection has been idle for `trimDelay`.
    /// Trimming whenever a BIO drained (after every response) meant freeing, after OpenSSL zeroes
    /// it, and growing again a 64 KiB+ buffer per large response on a keep-alive connection: 64 KiB
    /// downloads ran at 10,632 req/s against 11,368 without (`ab.py`, 5 × 5 s, same run). A busy
    /// connection keeps its buffers; an idle one (a WebSocket, a keep-alive connection after a
    /// download) gives them back within two `trimDelay`s.
    private func scheduleTrim(context: ChannelHandlerContext) {
        activeSinceTrimCheck = true
        guard trimTask == nil, connection.holdsLargeBuffers else { return }
        activeSinceTrimCheck = false
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        trimTask = context.eventLoop.scheduleTask(in: Self.trimDelay) {
            let (handler, context) = bound.value
            handler.trimTask = nil
            if !handler.activeSinceTrimCheck {
                let released = handler.connection.trimBuffers()
                if released > 0 { handler.counters?.recordReleased(bytes: released) }
            }
            // Busy since (or a BIO still holding bytes): look again later.
            handler.scheduleTrim(context: context)
        }
    }

    private func encrypt(context: ChannelHandlerContext, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        switch connection.write(buffer) {
        case .complete:
            if let output = connection.takeOutput(allocator: context.channel.allocator) {
                context.write(wrapOutboundOut(output), promise: promise)
            } else {
                promise?.succeed()
            }
            scheduleTrim(context: context)
        case .failed(let error):
            promise?.fail(error)
            fail(context: context, error)
        }
    }

    /// Writes (without flushing the application's writes) whatever OpenSSL produced, and flushes it.
    private func flushOutput(context: ChannelHandlerContext) {
        if let output = connection.takeOutput(allocator: context.channel.allocator) {
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: TLSError) {
        switch state {
        case .closing, .closed: return
        case .idle, .handshaking, .active: break
        }
        counters?.record(failure: error.code.rawValue)
        timeoutTask?.cancel()
        state = .closing
        failPendingWrites(error)
        // Send the alert OpenSSL queued, if any, then close.
        if let output = connection.takeOutput(allocator: context.channel.allocator) {
            context.writeAndFlush(wrapOutboundOut(output)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
        context.fireErrorCaught(error)
    }

    private func failPendingWrites(_ error: any Error) {
        let writes = pendingWrites
        pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
        unflushed = nil
        let promises = unflushedPromises
        unflushedPromises = []
        for promise in promises { promise.fail(error) }
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
